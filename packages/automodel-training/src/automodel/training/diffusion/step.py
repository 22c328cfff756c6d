"""One optimizer step of a diffusion model over micro-batches of latents, with an optional EMA update."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from automodel.training.diffusion.batch import split_batch
from automodel.training.step import StepResult, _gradient_sync, finish_step, to_device


def diffusion_train_step(
    model: torch.nn.Module,
    micro_batches: Sequence[dict],
    objective: Any,
    optimizer: torch.optim.Optimizer,
    *,
    step: int,
    lr_scheduler: Any = None,
    max_grad_norm: float | None = None,
    device: torch.device | str = "cpu",
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ema: Any = None,
) -> StepResult:
    """Train ``model`` one optimizer step on ``micro_batches`` and return its StepResult.

    Args:
        model: called as ``model(latents=, timesteps=, **conditioning)``; a data-parallel wrapper
            must sum gradients over ranks (DDP with a summing hook, FSDP2 with ``set_gradient_divide_factor(1)``).
        micro_batches: this rank's batches (``indices``, ``latents``, conditioning tensors).
        objective: a FlowMatchingObjective or DDPMObjective (``losses(model, batch, step) -> [B]``).
        optimizer, lr_scheduler, max_grad_norm: stepped and clipped as in ``train_step``.
        step: the optimizer step, part of every sample's random key.
        device: where the batches go.
        all_reduce: a sum over the data-parallel ranks (None: a single process).
        ema: an ExponentialMovingAverage updated after the optimizer step.

    Returns:
        StepResult whose ``loss`` is the mean loss per sample over the global batch,
        ``num_label_tokens`` the global batch's samples and ``num_tokens`` this rank's samples (images).
        Every micro-batch's loss sum is divided by the global sample count, so any split of the
        global batch over micro-batches and ranks gives the same gradient.
    """
    model.train()
    local_samples = sum(len(split_batch(b)[1]) for b in micro_batches)
    num_samples = torch.tensor(local_samples, device=device)
    if all_reduce is not None:
        num_samples = all_reduce(num_samples)
    loss_sum = torch.zeros((), device=device)
    last = len(micro_batches) - 1
    for index, micro_batch in enumerate(micro_batches):
        batch = to_device(micro_batch, device)
        with _gradient_sync(model, index == last):
            loss = objective.losses(model, batch, step).sum() / num_samples
            loss.backward()
        loss_sum += loss.detach()
    result = finish_step(
        model, optimizer, lr_scheduler, max_grad_norm, all_reduce, loss_sum, num_samples, local_samples
    )
    if ema is not None:
        ema.update()
    return result
