"""Per-sample random draws keyed by (seed, step, dataset index), so they do not depend on how a batch is split."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable

import torch


def sample_generator(*key: int) -> torch.Generator:
    """Return a CPU generator seeded from the integers ``key`` (e.g. ``(seed, step, index)``).

    The seed is a hash of the whole key, so neighbouring keys give unrelated streams and keys of
    different lengths never collide.
    """
    digest = hashlib.blake2b(struct.pack(f"<{len(key)}q", *key), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") & (2**63 - 1))


def per_sample_draws(
    indices: torch.Tensor,
    key: tuple[int, ...],
    noise_shape: torch.Size,
    draw_timestep: Callable[[torch.Generator], torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Draw each sample's timestep, caption-dropout uniform and noise from its own generator.

    Args:
        indices: the samples' dataset indices [B].
        key: what precedes the index in the generator key, e.g. ``(seed, step)``.
        noise_shape: one sample's latent shape (without the batch dimension).
        draw_timestep: draws one sample's timestep (a 0-d tensor) from a generator.

    Returns:
        ``(timestep draws [B], dropout uniforms in [0, 1) [B], noise [B, *noise_shape])``, float32 on
        the CPU; the draws happen in this order on each sample's generator.
    """
    timesteps, uniforms, noises = [], [], []
    for index in indices.tolist():
        generator = sample_generator(*key, index)
        timesteps.append(draw_timestep(generator))
        uniforms.append(torch.rand((), generator=generator))
        noises.append(torch.randn(noise_shape, generator=generator))
    return torch.stack(timesteps), torch.stack(uniforms), torch.stack(noises)


def keyed_normal(indices: torch.Tensor, key: tuple[int, ...], shape: torch.Size) -> torch.Tensor:
    """Return a standard normal draw [B, *shape] (float32, CPU) per sample, from the generator ``(*key, index)``."""
    return torch.stack([torch.randn(shape, generator=sample_generator(*key, i)) for i in indices.tolist()])


def validation_noise(indices: torch.Tensor, seed: int, noise_shape: torch.Size) -> torch.Tensor:
    """Return each sample's fixed validation noise [B, *noise_shape] (float32, CPU), keyed by ``(seed, index)``."""
    return keyed_normal(indices, (seed,), noise_shape)
