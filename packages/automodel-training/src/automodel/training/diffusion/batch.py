"""A diffusion batch: its parts, caption dropout, one training draw and the per-sample loss of a draw."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from automodel.training.diffusion.randomness import keyed_normal
from automodel.training.errors import TrainingError

RESERVED_KEYS = ("indices", "latents")
POSTERIOR_KEY = "latents_std"  # the VAE posterior's standard deviation beside its mean, ``latents``
POSTERIORS = ("mean", "sample")
POSTERIOR_STREAM = 1  # appended to a draw's key: posterior draws never share a generator with the noise


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
    conditioning = {
        k: v for k, v in batch.items() if k not in (*RESERVED_KEYS, POSTERIOR_KEY) and isinstance(v, torch.Tensor)
    }
    return batch["indices"], batch["latents"], conditioning


def posterior_latents(batch: dict, posterior: str, key: tuple[int, ...]) -> torch.Tensor:
    """Return the clean latents a training draw starts from.

    Args:
        batch: the diffusion batch; ``latents`` are the VAE posteriors' means and, for ``"sample"``,
            ``latents_std`` their standard deviations (same shape).
        posterior: ``"mean"`` trains on the means; ``"sample"`` on ``latents + latents_std * noise``
            with the noise of each sample drawn from the generator ``(*key, POSTERIOR_STREAM, index)``.
        key: what precedes the index in the generator key, e.g. ``(seed, step)``.

    Returns:
        Latents [B, ...] in the dtype and on the device of ``batch["latents"]``.
    """
    latents = batch["latents"]
    if posterior == "mean":
        return latents
    std = batch.get(POSTERIOR_KEY)
    if not isinstance(std, torch.Tensor) or std.shape != latents.shape:
        raise TrainingError(
            f"posterior='sample' needs '{POSTERIOR_KEY}' beside 'latents' in every batch (the VAE posterior's "
            "standard deviation, as encode_image_posteriors gives and a latent cache written by "
            "automodel-recipes-diffusion 0.2.0 or later stores); use posterior='mean' to train on the means."
        )
    noise = keyed_normal(batch["indices"], (*key, POSTERIOR_STREAM), latents.shape[1:]).to(latents.device)
    return (latents.float() + std.float() * noise).to(latents.dtype)


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
