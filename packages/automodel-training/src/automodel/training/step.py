"""One optimizer step: micro-batches with gradient accumulation, clipping, optimizer and LR schedule."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from automodel.training.loss import IGNORE_INDEX, forward_loss, logits_of

MicroBatchHook = Callable[[dict], tuple[contextlib.AbstractContextManager, dict]]


@dataclass(frozen=True)
class StepResult:
    """What one optimizer step did.

    Attributes:
        loss: mean loss per label token over the step (all micro-batches, all reducing ranks).
        grad_norm: the total gradient norm before clipping.
        num_label_tokens: label tokens in the step (over the ranks ``all_reduce`` sums).
        num_tokens: real (non-padding) input tokens in the step on this rank.
    """

    loss: float
    grad_norm: float
    num_label_tokens: int
    num_tokens: int


def to_device(batch: dict, device: torch.device | str) -> dict:
    """Move every tensor of ``batch`` to ``device`` (others are kept as they are)."""
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def count_label_tokens(batches: Sequence[dict], ignore_index: int = IGNORE_INDEX) -> int:
    """Return the number of positions whose label is not ``ignore_index`` over ``batches``."""
    return int(sum((b["labels"] != ignore_index).sum() for b in batches))


def count_real_tokens(batch: dict) -> int:
    """Return the non-padding input tokens of a batch.

    Uses ``attention_mask`` when present; a packed batch (no mask) counts the tokens of its
    ``seq_lens`` when given, else every position.
    """
    if "attention_mask" in batch:
        return int(batch["attention_mask"].sum())
    if "seq_lens" in batch:
        return int(torch.as_tensor(batch["seq_lens"]).sum())
    return int(batch["input_ids"].numel())


def clip_grad_norm(parameters: Any, max_norm: float | None) -> float:
    """Clip gradients to ``max_norm`` (None: only measure) and return the total norm before clipping.

    Works for plain tensors and DTensor shards (the norm is then the true global norm). When
    gradients live on different device meshes (FSDP2 over data-parallel ranks for some
    parameters, FSDP2 x TP for others) the norm of each mesh's group is computed on its own
    and the groups are combined, since DTensor cannot mix meshes in one reduction.
    """
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return 0.0
    groups: dict[Any, list[torch.Tensor]] = {}
    for param in params:
        groups.setdefault(getattr(param.grad, "device_mesh", None), []).append(param.grad)
    if len(groups) == 1:
        limit = float("inf") if max_norm is None else max_norm
        norm = torch.nn.utils.clip_grad_norm_(params, limit, foreach=True)
        return float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
    squares = 0.0
    for grads in groups.values():
        norm = torch.nn.utils.get_total_norm(grads, 2.0, foreach=True)
        squares += float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm) ** 2
    total = squares**0.5
    if max_norm is not None and max_norm / (total + 1e-6) < 1.0:
        for grads in groups.values():
            for grad in grads:
                grad.mul_(max_norm / (total + 1e-6))
    return total


def _gradient_sync(model: torch.nn.Module, enabled: bool) -> contextlib.AbstractContextManager:
    """Hold back a data-parallel wrapper's gradient reduction (its ``no_sync``) until the step's last micro-batch.

    DDP reduces whatever ``.grad`` holds, so reducing after every micro-batch would add the
    earlier micro-batches' reduced gradients in again; models without ``no_sync`` sync as usual.
    """
    no_sync = getattr(model, "no_sync", None)
    return contextlib.nullcontext() if enabled or no_sync is None else no_sync()


def train_step(
    model: torch.nn.Module,
    micro_batches: Sequence[dict],
    loss_fn: Any,
    optimizer: torch.optim.Optimizer,
    *,
    lr_scheduler: Any = None,
    max_grad_norm: float | None = None,
    device: torch.device | str = "cpu",
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    prepare_micro_batch: MicroBatchHook | None = None,
    output_logits: Callable[[Any], torch.Tensor] = logits_of,
) -> StepResult:
    """Run forward/backward over ``micro_batches``, then clip, step the optimizer and the LR schedule.

    Every micro-batch loss is divided by the label-token count of the whole step (summed
    over ranks by ``all_reduce`` when given), so accumulation over any split equals one big
    batch. A data-parallel wrapper must therefore sum gradients over ranks, not average
    them; a wrapper with ``no_sync()`` (DDP) reduces once, after the last micro-batch.
    ``prepare_micro_batch(batch) -> (context, batch)`` is applied to each micro-batch on
    the device, and its context is entered around that micro-batch's forward and backward
    (context parallelism, loss over vocabulary-sharded logits). ``model`` may be any
    ``nn.Module`` taking ``input_ids``; ``output_logits`` finds the logits in its output
    (see ``forward_loss``). Returns a StepResult with the step's mean token loss and gradient norm.
    """
    model.train()
    num_label_tokens = torch.tensor(count_label_tokens(micro_batches), device=device)
    if all_reduce is not None:
        num_label_tokens = all_reduce(num_label_tokens)
    loss_sum = torch.zeros((), device=device)
    num_tokens = 0
    last = len(micro_batches) - 1
    for index, micro_batch in enumerate(micro_batches):
        batch = to_device(micro_batch, device)
        num_tokens += count_real_tokens(batch)
        context, batch = prepare_micro_batch(batch) if prepare_micro_batch else (contextlib.nullcontext(), batch)
        with context, _gradient_sync(model, index == last):
            loss = forward_loss(model, batch, loss_fn, num_label_tokens, output_logits=output_logits)
            loss.backward()
        loss_sum += loss.detach()
    return finish_step(
        model, optimizer, lr_scheduler, max_grad_norm, all_reduce, loss_sum, num_label_tokens, num_tokens
    )


def finish_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: Any,
    max_grad_norm: float | None,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None,
    loss_sum: torch.Tensor,
    num_label_tokens: torch.Tensor,
    num_tokens: int,
) -> StepResult:
    """End a step whose micro-batches have run backward: sum the loss over the ranks, clip, step the optimizer
    and the LR schedule; return the StepResult (``num_label_tokens``: the step's loss divisor over every rank)."""
    if all_reduce is not None:
        loss_sum = all_reduce(loss_sum)
    grad_norm = clip_grad_norm(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if lr_scheduler is not None:
        lr_scheduler.step()
    return StepResult(float(loss_sum), grad_norm, int(num_label_tokens), num_tokens)
