"""Validation loss of a diffusion model at fixed timesteps with fixed per-sample noise."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from automodel.training.diffusion.batch import split_batch
from automodel.training.step import to_device


@torch.no_grad()
def diffusion_validation_loss(
    model: torch.nn.Module,
    dataloader: Iterable[dict],
    objective: Any,
    *,
    timesteps: Sequence[float] | None = None,
    device: torch.device | str = "cpu",
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict:
    """Return the mean validation loss per sample over ``dataloader``, overall and at each fixed timestep.

    Args:
        model: the diffusion model; run in eval mode without gradients, its mode restored afterwards.
        dataloader: batches of ``indices``, ``latents`` and conditioning tensors.
        objective: a FlowMatchingObjective (timesteps are noise levels in (0, 1]) or a DDPMObjective
            (integer timesteps in [0, T)).
        timesteps: the fixed timesteps; None takes the objective's ``validation_timesteps``
            ((0.25, 0.5, 0.75) for flow matching, (T/4, T/2, 3T/4) for DDPM).
        device: where the batches go.
        all_reduce: a sum over the data-parallel ranks, each reading its own shard of the set.

    Returns:
        ``{"val_loss", "val_samples", "val_loss_t{timestep}" for each timestep}`` where ``val_loss``
        is the mean over timesteps and samples. Each sample's noise is keyed by ``(seed, index)``,
        so equal weights give the same numbers at every call.
    """
    timesteps = tuple(objective.validation_timesteps if timesteps is None else timesteps)
    was_training = model.training
    model.eval()
    sums = torch.zeros(len(timesteps) + 1, dtype=torch.float64, device=device)
    try:
        for micro_batch in dataloader:
            batch = to_device(micro_batch, device)
            for k, timestep in enumerate(timesteps):
                sums[k] += objective.validation_losses(model, batch, [timestep]).double().sum()
            sums[-1] += len(split_batch(batch)[1])
    finally:
        model.train(was_training)
    if all_reduce is not None:
        sums = all_reduce(sums)
    samples = int(sums[-1])
    per_timestep = [float(total) / samples if samples else float("nan") for total in sums[:-1]]
    result = {f"val_loss_t{timestep:g}": loss for timestep, loss in zip(timesteps, per_timestep, strict=True)}
    return {"val_loss": sum(per_timestep) / len(per_timestep), "val_samples": samples, **result}
