"""The DDPM objective of UNet models (SD 1.x/2.x, SDXL): epsilon or v prediction at discrete timesteps."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

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
from automodel.training.diffusion.checks import check_choice, check_probability
from automodel.training.diffusion.randomness import per_sample_draws, validation_noise
from automodel.training.errors import TrainingError

PREDICTION_TYPES = ("epsilon", "v_prediction")
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


def _cosine_betas(num_train_timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    """The betas of the squared-cosine alpha-bar schedule (Nichol & Dhariwal 2021), each capped at ``max_beta``."""

    def alpha_bar(t: float) -> float:
        return math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2

    betas = [
        min(1 - alpha_bar((i + 1) / num_train_timesteps) / alpha_bar(i / num_train_timesteps), max_beta)
        for i in range(num_train_timesteps)
    ]
    return torch.tensor(betas, dtype=torch.float32)


def _zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Rescale ``betas`` so the last timestep is pure noise (Lin et al. 2023), keeping the first one's signal."""
    root = torch.cumprod(1.0 - betas, dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    alphas_cumprod = root**2
    alphas = torch.cat([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    return 1.0 - alphas


def alphas_cumprod_from_config(config: dict) -> torch.Tensor:
    """Return the cumulative alpha products [T] (float32) of a diffusers DDPM/DDIM/Euler scheduler config.

    Reads ``num_train_timesteps`` (1000), ``trained_betas``, else ``beta_schedule`` (``linear``,
    ``scaled_linear``, ``squaredcos_cap_v2``) with ``beta_start`` (0.0001) and ``beta_end`` (0.02),
    and ``rescale_betas_zero_snr``, with diffusers' defaults in brackets.
    """
    steps = int(config.get("num_train_timesteps", 1000))
    start, end = float(config.get("beta_start", 0.0001)), float(config.get("beta_end", 0.02))
    if config.get("trained_betas") is not None:
        betas = torch.tensor(config["trained_betas"], dtype=torch.float32)
    else:
        schedule = config.get("beta_schedule", "linear")
        check_choice("beta_schedule", schedule, BETA_SCHEDULES)
        betas = {
            "linear": partial(torch.linspace, start, end, steps, dtype=torch.float32),
            "scaled_linear": lambda: torch.linspace(start**0.5, end**0.5, steps, dtype=torch.float32) ** 2,
            "squaredcos_cap_v2": partial(_cosine_betas, steps),
        }[schedule]()
    if config.get("rescale_betas_zero_snr", False):
        betas = _zero_terminal_snr(betas)
    return torch.cumprod(1.0 - betas, dim=0)


def _uniform_timestep(generator: torch.Generator, num_train_timesteps: int) -> torch.Tensor:
    return torch.randint(0, num_train_timesteps, (), generator=generator)


class DDPMObjective:
    """Noise latents at a uniform integer timestep t in [0, T) and regress epsilon or v.

    Noisy latents are ``sqrt(a_t) * latents + sqrt(1 - a_t) * noise`` with ``a_t = alphas_cumprod[t]``;
    the target is the noise (``epsilon``) or ``sqrt(a_t) * noise - sqrt(1 - a_t) * latents``
    (``v_prediction``); the model gets ``t`` as float timesteps. Randomness, caption dropout and
    ``posterior`` work as in FlowMatchingObjective (generators keyed by ``(seed, step, dataset index)``).
    """

    def __init__(
        self,
        *,
        alphas_cumprod: torch.Tensor,
        prediction_type: str = "epsilon",
        caption_dropout: float = 0.0,
        seed: int = 0,
        null_conditioning: dict | None = None,
        posterior: str = "mean",
    ) -> None:
        check_choice("prediction_type", prediction_type, PREDICTION_TYPES)
        check_probability("caption_dropout", caption_dropout)
        check_choice("posterior", posterior, POSTERIORS)
        self.alphas_cumprod = torch.as_tensor(alphas_cumprod, dtype=torch.float32).cpu()
        self.num_train_timesteps = len(self.alphas_cumprod)
        self.prediction_type = prediction_type
        self.caption_dropout = caption_dropout
        self.seed = seed
        self.null_conditioning = null_conditioning
        self.posterior = posterior
        self.validation_timesteps = tuple(int(f * self.num_train_timesteps) for f in (0.25, 0.5, 0.75))

    @classmethod
    def from_scheduler_config(cls, config: dict, **settings) -> DDPMObjective:
        """Build the objective of a diffusers scheduler config (its betas and ``prediction_type``).

        ``settings`` are the other constructor arguments; a ``prediction_type`` there overrides the config's.
        """
        settings.setdefault("prediction_type", config.get("prediction_type", "epsilon"))
        return cls(alphas_cumprod=alphas_cumprod_from_config(config), **settings)

    def draw(self, batch: dict, step: int) -> Draw:
        """Return the training draw of ``batch`` at optimizer step ``step`` (timesteps, noise, caption dropout)."""
        indices, _, conditioning = split_batch(batch)
        latents = posterior_latents(batch, self.posterior, (self.seed, step))
        draw_timestep = partial(_uniform_timestep, num_train_timesteps=self.num_train_timesteps)
        timesteps, uniforms, noise = per_sample_draws(indices, (self.seed, step), latents.shape[1:], draw_timestep)
        conditioning, dropped = drop_captions(conditioning, uniforms, self.caption_dropout, self.null_conditioning)
        return self._noised(latents, noise, timesteps, conditioning, dropped)

    def losses(self, model: torch.nn.Module, batch: dict, step: int) -> torch.Tensor:
        """Return the per-sample losses [B] (float32) of ``model`` on ``batch`` at optimizer step ``step``."""
        return per_sample_losses(model, self.draw(batch, step))

    def validation_losses(self, model: torch.nn.Module, batch: dict, timesteps: Sequence[int]) -> torch.Tensor:
        """Return each sample's loss [B] averaged over the fixed integer ``timesteps`` in [0, T).

        The noise of a sample is keyed by ``(seed, index)`` only and there is no caption dropout.
        """
        if not timesteps or not all(int(t) == t and 0 <= t < self.num_train_timesteps for t in timesteps):
            raise TrainingError(
                f"DDPM validation timesteps are integers in [0, {self.num_train_timesteps}); got {list(timesteps)}."
            )
        indices, latents, conditioning = split_batch(batch)
        noise = validation_noise(indices, self.seed, latents.shape[1:])
        dropped = torch.zeros(len(indices), dtype=torch.bool)
        total = torch.zeros(len(indices), device=latents.device)
        for t in timesteps:
            fixed = torch.full((len(indices),), int(t), dtype=torch.long)
            total += per_sample_losses(model, self._noised(latents, noise, fixed, conditioning, dropped))
        return total / len(timesteps)

    def _noised(
        self,
        latents: torch.Tensor,
        noise: torch.Tensor,
        timesteps: torch.Tensor,
        conditioning: dict,
        dropped: torch.Tensor,
    ) -> Draw:
        """The noisy latents, target and weights of ``latents`` with ``noise`` at integer ``timesteps``."""
        clean = latents.float()
        noise = noise.to(latents.device)
        alpha = view_per_sample(self.alphas_cumprod[timesteps].to(latents.device), clean)
        signal, sigma = alpha.sqrt(), (1.0 - alpha).sqrt()
        target = noise if self.prediction_type == "epsilon" else signal * noise - sigma * clean
        return Draw(
            noisy=(signal * clean + sigma * noise).to(latents.dtype),
            timesteps=timesteps.to(latents.device, torch.float32),
            target=target,
            weights=torch.ones(len(timesteps), device=latents.device),
            conditioning=conditioning,
            dropped=dropped,
        )
