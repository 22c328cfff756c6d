"""The rectified-flow (flow matching) objective of SD3, Flux and similar transformers: velocity prediction."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from automodel.training.diffusion.batch import (
    POSTERIORS,
    Draw,
    drop_captions,
    per_sample_losses,
    posterior_latents,
    split_batch,
    view_per_sample,
)
from automodel.training.diffusion.checks import check_choice, check_positive, check_probability
from automodel.training.diffusion.randomness import per_sample_draws, validation_noise
from automodel.training.diffusion.sigmas import (
    WEIGHTING_SCHEMES,
    apply_resolution_shift,
    apply_static_shift,
    check_resolution_shift,
    loss_weights,
    resolution_mu,
    sigma_sampler,
)
from automodel.training.errors import TrainingError


class FlowMatchingObjective:
    """Noise latents along the straight path to Gaussian noise and regress the velocity ``noise - latents``.

    A sample's noise level sigma is drawn by ``timestep_sampling`` (SD3's densities), shifted by
    the static ``flow_shift`` or Flux's ``resolution_shift`` (from the latents' token count with
    ``patch_size``), and kept within [1 / num_train_timesteps, 1], the discrete schedule's range.
    Noisy latents are ``(1 - sigma) * latents + sigma * noise`` and the model gets the timesteps
    ``sigma * num_train_timesteps``. The per-sample loss is the MSE weighted by ``weighting``.
    Every draw comes from a generator keyed by ``(seed, step, dataset index)``. With
    ``caption_dropout`` a sample's conditioning is replaced by ``null_conditioning`` (per-sample
    tensors for every conditioning key, e.g. the empty prompt's embeddings; also settable as an attribute).
    ``posterior`` chooses the clean latents: ``"mean"`` trains on the batch's ``latents`` (the VAE
    posteriors' means); ``"sample"`` on a posterior sample ``latents + latents_std * noise`` per
    sample and step, as diffusers' training scripts do. Validation always uses the means.
    """

    validation_timesteps: tuple[float, ...] = (0.25, 0.5, 0.75)

    def __init__(
        self,
        *,
        timestep_sampling: str = "logit_normal",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        mode_scale: float = 1.29,
        sigmoid_scale: float = 1.0,
        flow_shift: float = 1.0,
        resolution_shift: dict | None = None,
        patch_size: int = 2,
        weighting: str = "none",
        num_train_timesteps: int = 1000,
        caption_dropout: float = 0.0,
        seed: int = 0,
        null_conditioning: dict | None = None,
        posterior: str = "mean",
    ) -> None:
        self._sampler = sigma_sampler(
            timestep_sampling,
            logit_mean=logit_mean,
            logit_std=logit_std,
            mode_scale=mode_scale,
            sigmoid_scale=sigmoid_scale,
        )
        check_positive("logit_std", logit_std)
        check_positive("sigmoid_scale", sigmoid_scale)
        check_positive("flow_shift", flow_shift)
        check_positive("patch_size", patch_size)
        check_positive("num_train_timesteps", num_train_timesteps)
        check_choice("weighting", weighting, WEIGHTING_SCHEMES)
        check_probability("caption_dropout", caption_dropout)
        check_choice("posterior", posterior, POSTERIORS)
        if resolution_shift is not None and flow_shift != 1.0:
            raise TrainingError(
                "Set either flow_shift (a static shift) or resolution_shift (a shift by image size), not both; "
                f"got flow_shift={flow_shift} and resolution_shift={resolution_shift}."
            )
        self.timestep_sampling = timestep_sampling
        self.flow_shift = flow_shift
        self.resolution_shift = None if resolution_shift is None else check_resolution_shift(resolution_shift)
        self.patch_size = patch_size
        self.weighting = weighting
        self.num_train_timesteps = num_train_timesteps
        self.caption_dropout = caption_dropout
        self.seed = seed
        self.null_conditioning = null_conditioning
        self.posterior = posterior

    def shift(self, sigmas: torch.Tensor, latent_size: Sequence[int]) -> torch.Tensor:
        """Return ``sigmas`` after the configured shift for latents of spatial size ``latent_size`` (H, W)."""
        if self.resolution_shift is None:
            return apply_static_shift(sigmas, self.flow_shift)
        height, width = latent_size
        tokens = (height // self.patch_size) * (width // self.patch_size)
        return apply_resolution_shift(sigmas, resolution_mu(tokens, self.resolution_shift))

    def draw(self, batch: dict, step: int) -> Draw:
        """Return the training draw of ``batch`` at optimizer step ``step`` (sigmas, noise, caption dropout)."""
        indices, _, conditioning = split_batch(batch)
        latents = posterior_latents(batch, self.posterior, (self.seed, step))
        raw, uniforms, noise = per_sample_draws(indices, (self.seed, step), latents.shape[1:], self._sampler)
        sigmas = self.shift(raw.clamp(0.0, 1.0), latents.shape[-2:]).clamp(1.0 / self.num_train_timesteps, 1.0)
        conditioning, dropped = drop_captions(conditioning, uniforms, self.caption_dropout, self.null_conditioning)
        return self._noised(latents, noise, sigmas, conditioning, dropped)

    def losses(self, model: torch.nn.Module, batch: dict, step: int) -> torch.Tensor:
        """Return the per-sample losses [B] (float32) of ``model`` on ``batch`` at optimizer step ``step``."""
        return per_sample_losses(model, self.draw(batch, step))

    def validation_losses(self, model: torch.nn.Module, batch: dict, sigmas: Sequence[float]) -> torch.Tensor:
        """Return each sample's loss [B] averaged over the fixed noise levels ``sigmas`` (in (0, 1], not shifted).

        The noise of a sample is keyed by ``(seed, index)`` only and there is no caption dropout,
        so the result is the same at every step for the same weights.
        """
        if not sigmas or not all(0.0 < sigma <= 1.0 for sigma in sigmas):
            raise TrainingError(f"Flow matching validation timesteps are noise levels in (0, 1]; got {list(sigmas)}.")
        indices, latents, conditioning = split_batch(batch)
        noise = validation_noise(indices, self.seed, latents.shape[1:])
        dropped = torch.zeros(len(indices), dtype=torch.bool)
        total = torch.zeros(len(indices), device=latents.device)
        for sigma in sigmas:
            levels = torch.full((len(indices),), float(sigma))
            total += per_sample_losses(model, self._noised(latents, noise, levels, conditioning, dropped))
        return total / len(sigmas)

    def _noised(
        self,
        latents: torch.Tensor,
        noise: torch.Tensor,
        sigmas: torch.Tensor,
        conditioning: dict,
        dropped: torch.Tensor,
    ) -> Draw:
        """The noisy latents, target and weights of ``latents`` with ``noise`` at noise levels ``sigmas``."""
        noise = noise.to(latents.device)
        sigmas = sigmas.to(latents.device)
        clean = latents.float()
        sigma = view_per_sample(sigmas, clean)
        return Draw(
            noisy=((1.0 - sigma) * clean + sigma * noise).to(latents.dtype),
            timesteps=sigmas * self.num_train_timesteps,
            target=noise - clean,
            weights=loss_weights(sigmas, self.weighting),
            conditioning=conditioning,
            dropped=dropped,
            sigmas=sigmas,
        )
