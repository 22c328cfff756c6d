"""Flow matching noise levels: timestep-sampling densities, static and resolution-dependent shifts, loss weighting.

The densities and weightings follow SD3 (Esser et al. 2024) as diffusers' training utilities
compute them; the resolution-dependent shift is Flux's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch

from automodel.training.diffusion.checks import check_choice
from automodel.training.errors import TrainingError

SAMPLING_SCHEMES = ("uniform", "logit_normal", "mode", "sigmoid")
WEIGHTING_SCHEMES = ("none", "sigma_sqrt", "cosmap")
RESOLUTION_SHIFT_DEFAULTS = {"base_shift": 0.5, "max_shift": 1.15, "base_seq_len": 256, "max_seq_len": 4096}


def _uniform(generator: torch.Generator) -> torch.Tensor:
    return torch.rand((), generator=generator)


def _logit_normal(generator: torch.Generator, mean: float, std: float) -> torch.Tensor:
    return torch.sigmoid(torch.randn((), generator=generator) * std + mean)


def _mode(generator: torch.Generator, mode_scale: float) -> torch.Tensor:
    u = torch.rand((), generator=generator)
    return 1.0 - u - mode_scale * (torch.cos(math.pi * u / 2) ** 2 - 1.0 + u)


def sigma_sampler(
    scheme: str, *, logit_mean: float, logit_std: float, mode_scale: float, sigmoid_scale: float
) -> Callable[[torch.Generator], torch.Tensor]:
    """Return a function drawing one unshifted noise level in [0, 1] from a generator.

    ``uniform``: U[0, 1); ``logit_normal``: sigmoid(N(logit_mean, logit_std)); ``sigmoid``:
    sigmoid(sigmoid_scale * N(0, 1)); ``mode``: SD3's mode sampling
    ``1 - u - mode_scale * (cos(pi u / 2)^2 - 1 + u)`` with u ~ U[0, 1).
    """
    check_choice("timestep_sampling", scheme, SAMPLING_SCHEMES)
    return {
        "uniform": _uniform,
        "logit_normal": partial(_logit_normal, mean=logit_mean, std=logit_std),
        "sigmoid": partial(_logit_normal, mean=0.0, std=sigmoid_scale),
        "mode": partial(_mode, mode_scale=mode_scale),
    }[scheme]


def apply_static_shift(sigmas: torch.Tensor, shift: float) -> torch.Tensor:
    """Return ``shift * sigma / (1 + (shift - 1) * sigma)`` (SD3's ``shift``; above 1 moves mass to noisier levels)."""
    return shift * sigmas / (1.0 + (shift - 1.0) * sigmas)


def resolution_mu(image_seq_len: int, settings: dict) -> float:
    """Return Flux's shift exponent mu, linear in the image token count between base_shift and max_shift."""
    slope = (settings["max_shift"] - settings["base_shift"]) / (settings["max_seq_len"] - settings["base_seq_len"])
    return settings["base_shift"] + slope * (image_seq_len - settings["base_seq_len"])


def apply_resolution_shift(sigmas: torch.Tensor, mu: float) -> torch.Tensor:
    """Return ``exp(mu) / (exp(mu) + (1 / sigma - 1))`` (Flux's time shift; sigma 0 stays 0)."""
    scale = math.exp(mu)
    return scale * sigmas / (scale * sigmas + (1.0 - sigmas))


def check_resolution_shift(settings: dict) -> dict:
    """Return the resolution-shift settings completed with their defaults, or raise TrainingError for unknown keys."""
    unknown = sorted(set(settings) - set(RESOLUTION_SHIFT_DEFAULTS))
    if unknown:
        raise TrainingError(
            f"resolution_shift takes the keys {', '.join(RESOLUTION_SHIFT_DEFAULTS)}; got unknown {unknown}."
        )
    merged = {**RESOLUTION_SHIFT_DEFAULTS, **settings}
    if merged["max_seq_len"] <= merged["base_seq_len"]:
        raise TrainingError(
            f"resolution_shift max_seq_len ({merged['max_seq_len']}) must exceed "
            f"base_seq_len ({merged['base_seq_len']})."
        )
    return merged


def loss_weights(sigmas: torch.Tensor, scheme: str) -> torch.Tensor:
    """Return SD3's per-sample loss weights [B] (float32).

    ``none``: 1; ``sigma_sqrt``: ``sigma^-2``; ``cosmap``: ``2 / (pi (1 - 2 sigma + 2 sigma^2))``.
    """
    check_choice("weighting", scheme, WEIGHTING_SCHEMES)
    sigmas = sigmas.float()
    if scheme == "sigma_sqrt":
        return sigmas**-2.0
    if scheme == "cosmap":
        return 2.0 / (math.pi * (1.0 - 2.0 * sigmas + 2.0 * sigmas**2))
    return torch.ones_like(sigmas)
