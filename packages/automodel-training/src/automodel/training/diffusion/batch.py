"""A diffusion batch: its parts, caption dropout, one training draw and the per-sample loss of a draw."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from automodel.training.errors import TrainingError

RESERVED_KEYS = ("indices", "latents")


@dataclass(frozen=True)
class Draw:
    """The model inputs and targets of one batch.

    Attributes:
        noisy: noisy latents, the latents' shape and dtype.
        timesteps: float32 [B] on the scheduler's scale (what the model is called with).
        target: what the model should predict, float32, the latents' shape.
        weights: per-sample loss weights, float32 [B].
        conditioning: the conditioning tensors after caption dropout.
        dropped: bool [B] (on the CPU), the samples whose conditioning was replaced by the null conditioning.
        sigmas: flow matching's noise levels in [0, 1] [B] (None for DDPM).
    """

    noisy: torch.Tensor
    timesteps: torch.Tensor
    target: torch.Tensor
    weights: torch.Tensor
    conditioning: dict
    dropped: torch.Tensor
    sigmas: torch.Tensor | None = None


def split_batch(batch: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Return ``(indices [B], latents [B, ...], conditioning)``: conditioning is every other tensor of the batch."""
    missing = [key for key in RESERVED_KEYS if not isinstance(batch.get(key), torch.Tensor)]
    if missing:
        raise TrainingError(
            f"A diffusion batch needs the tensors 'indices' (dataset indices) and 'latents'; it lacks {missing}."
        )
    conditioning = {k: v for k, v in batch.items() if k not in RESERVED_KEYS and isinstance(v, torch.Tensor)}
    return batch["indices"], batch["latents"], conditioning


def drop_captions(
    conditioning: dict, uniforms: torch.Tensor, caption_dropout: float, null_conditioning: dict | None
) -> tuple[dict, torch.Tensor]:
    """Replace the conditioning of the samples whose uniform draw is below ``caption_dropout``.

    Args:
        conditioning: the batch's conditioning tensors [B, ...].
        uniforms: each sample's dropout draw in [0, 1) [B].
        caption_dropout: the probability of dropping a sample's conditioning.
        null_conditioning: per-sample tensors (no batch dimension) for every conditioning key,
            e.g. the empty prompt's embeddings; needed when ``caption_dropout > 0``.

    Returns:
        ``(conditioning, dropped)``: the new conditioning and the bool mask [B] of replaced samples.
    """
    dropped = uniforms < caption_dropout
    if caption_dropout == 0.0:
        return conditioning, dropped
    if null_conditioning is None:
        raise TrainingError(
            f"caption_dropout={caption_dropout} needs null_conditioning (the empty prompt's conditioning "
            "tensors, one sample each); set it on the objective or use caption_dropout=0."
        )
    missing = sorted(set(conditioning) - set(null_conditioning))
    if missing:
        raise TrainingError(f"null_conditioning lacks the conditioning keys {missing} of the batch.")
    replaced = {}
    for key, value in conditioning.items():
        mask = dropped.to(value.device).view(-1, *([1] * (value.dim() - 1)))
        replaced[key] = torch.where(mask, null_conditioning[key].to(value).expand_as(value), value)
    return replaced, dropped


def view_per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Return ``values`` [B] shaped to broadcast over ``like`` [B, ...]."""
    return values.view(-1, *([1] * (like.dim() - 1)))


def per_sample_losses(model: torch.nn.Module, draw: Draw) -> torch.Tensor:
    """Run ``model(latents=, timesteps=, **conditioning)`` and return the weighted MSE per sample [B] (float32)."""
    prediction = model(latents=draw.noisy, timesteps=draw.timesteps, **draw.conditioning)
    if prediction.shape != draw.target.shape:
        raise TrainingError(
            f"The diffusion model must predict the latents' shape {tuple(draw.target.shape)}, "
            f"got {tuple(prediction.shape)}."
        )
    squared = (prediction.float() - draw.target) ** 2
    return squared.flatten(1).mean(1) * draw.weights
