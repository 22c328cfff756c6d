"""Cross-entropy of a linear head computed chunk by chunk, with its gradients, so no ``[tokens, vocab]`` tensor exists.

The forward pass projects ``chunk_size`` positions at a time, takes the fp32 log-softmax,
and right away turns it into that chunk's gradients: ``d hidden`` for the chunk and a
running ``d weight`` (added in place into one buffer). Backward only scales the stored
gradients by the incoming gradient. Peak memory is one chunk's logits plus the
gradients themselves, whatever the number of tokens.
"""

from __future__ import annotations

from typing import Any

import torch


def _chunk_gradients(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    target: torch.Tensor,
    scale: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return ``(summed loss, d logits)`` of one chunk; the gradient is already multiplied by ``scale``."""
    logits = torch.nn.functional.linear(hidden, weight, bias).float()
    log_probs = torch.log_softmax(logits, dim=-1)
    del logits
    loss = -log_probs.gather(1, target[:, None]).sum()
    grad = log_probs.exp_()
    grad[torch.arange(target.numel(), device=target.device), target] -= 1.0
    return loss, grad.mul_(scale)


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, hidden, weight, bias, target, denominator, chunk_size):
        scale = 1.0 / denominator.float()
        needs_weight, needs_bias = weight.requires_grad, bias is not None and bias.requires_grad
        grad_hidden = torch.empty_like(hidden) if hidden.requires_grad else None
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if needs_weight else None
        grad_bias = torch.zeros(bias.shape, dtype=torch.float32, device=bias.device) if needs_bias else None
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        for start in range(0, target.numel(), chunk_size):
            part = slice(start, start + chunk_size)
            loss, grad_logits = _chunk_gradients(hidden[part], weight, bias, target[part], scale)
            total += loss
            if grad_hidden is not None:
                grad_hidden[part] = (grad_logits.to(weight.dtype) @ weight).to(hidden.dtype)
            if grad_weight is not None:
                grad_weight.addmm_(grad_logits.t(), hidden[part].float())
            if grad_bias is not None:
                grad_bias += grad_logits.sum(0)
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.dtypes = (hidden.dtype, weight.dtype, None if bias is None else bias.dtype)
        return total * scale

    @staticmethod
    def backward(ctx: Any, grad_output):
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        hidden_dtype, weight_dtype, bias_dtype = ctx.dtypes
        # In place: each stored gradient is used once, and a weight-sized copy is what this loss avoids.
        outputs = [
            None if grad is None else grad.mul_(grad_output).to(dtype)
            for grad, dtype in ((grad_hidden, hidden_dtype), (grad_weight, weight_dtype), (grad_bias, bias_dtype))
        ]
        return (*outputs, None, None, None)


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    denominator: torch.Tensor,
    bias: torch.Tensor | None = None,
    chunk_size: int = 1024,
) -> torch.Tensor:
    """Return ``sum(cross_entropy(hidden @ weight.T + bias, target)) / denominator`` without building the logits.

    Args:
        hidden: ``[tokens, hidden]`` states of the positions that have a label.
        weight: the head's ``[vocab, hidden]`` weight; bias: its ``[vocab]`` bias or None.
        target: ``[tokens]`` class indices (no ignored positions).
        denominator: the count to divide the summed loss by (a tensor, e.g. the step's label tokens).
        chunk_size: positions projected at once; memory grows with it, speed up to a point.

    Returns:
        A scalar fp32 loss whose backward gives the exact gradients (computed in fp32, each
        chunk's softmax once, no recomputation).
    """
    return _LinearCrossEntropy.apply(hidden, weight, bias, target, denominator, chunk_size)
