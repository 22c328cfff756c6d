"""What a diffusion training step needs from a pipeline: latents of images, embeddings of captions,
the denoiser called with one signature, and sample images for fixed prompts.

Supported pipelines: Stable Diffusion 3 / 3.5 (an ``SD3Transformer2DModel``, CLIP + CLIP + T5
prompts) and Stable Diffusion 1.x / 2.x (a ``UNet2DConditionModel``, one CLIP).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from automodel.models.errors import ModelError

SD3 = "StableDiffusion3Pipeline"
SD = "StableDiffusionPipeline"
SUPPORTED = (SD3, SD)


def pipeline_kind(pipeline: Any) -> str:
    """Return the pipeline's class name when it is one the training step supports; else a ModelError."""
    name = type(pipeline).__name__
    if name not in SUPPORTED:
        raise ModelError(f"{name} is not a pipeline automodel trains yet; supported: {', '.join(SUPPORTED)}")
    return name


@torch.no_grad()
def encode_prompts(
    pipeline: Any, captions: Sequence[str], *, max_sequence_length: int = 256
) -> dict[str, torch.Tensor]:
    """Embed ``captions`` with the pipeline's text encoders, as the pipeline does when sampling.

    Args:
        pipeline: a loaded diffusers pipeline (text encoders present).
        captions: the prompts.
        max_sequence_length: the T5 prompt length of Stable Diffusion 3 (pass the same when sampling).

    Returns:
        ``{"prompt_embeds": [B, L, D]}``, plus ``"pooled_prompt_embeds": [B, P]`` for Stable Diffusion 3.
    """
    kind = pipeline_kind(pipeline)
    device = pipeline.text_encoder.device
    if kind == SD3:
        embeds, _, pooled, _ = pipeline.encode_prompt(
            list(captions),
            None,
            None,
            device=device,
            do_classifier_free_guidance=False,
            max_sequence_length=max_sequence_length,
        )
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
    embeds, _ = pipeline.encode_prompt(list(captions), device, 1, False)
    return {"prompt_embeds": embeds}


@torch.no_grad()
def encode_images(pipeline: Any, pixel_values: torch.Tensor) -> torch.Tensor:
    """Encode images in [-1, 1] ([B, 3, H, W]) to the denoiser's latents: the VAE posterior's mode, shifted and scaled.

    Raises:
        ModelError: the image size is not a multiple of the VAE's downsampling factor.
    """
    return encode_image_posteriors(pipeline, pixel_values)["latents"]


@torch.no_grad()
def encode_image_posteriors(pipeline: Any, pixel_values: torch.Tensor) -> dict[str, torch.Tensor]:
    """Encode images in [-1, 1] ([B, 3, H, W]) to the VAE's Gaussian posteriors on the denoiser's scale.

    Returns:
        ``{"latents": mean, "latents_std": standard deviation}``, both [B, C, h, w] in the VAE's
        dtype, shifted and scaled as the denoiser sees them: a posterior sample is
        ``latents + latents_std * normal noise`` (what diffusers' training scripts train on).

    Raises:
        ModelError: the image size is not a multiple of the VAE's downsampling factor.
    """
    vae = pipeline.vae
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    height, width = pixel_values.shape[-2:]
    if height % factor or width % factor:
        raise ModelError(
            f"images of {height}x{width} pixels cannot pass the VAE, which downsamples by {factor}; "
            f"use a resolution (and buckets) that are multiples of {factor}"
        )
    posterior = vae.encode(pixel_values.to(vae.device, vae.dtype)).latent_dist
    shift = vae.config.get("shift_factor") or 0.0
    scale = vae.config.scaling_factor
    return {"latents": (posterior.mode() - shift) * scale, "latents_std": posterior.std * scale}


class DenoiserForTraining(torch.nn.Module):
    """The denoiser called as ``model(latents=, timesteps=, prompt_embeds=, pooled_prompt_embeds=)`` -> prediction.

    Wraps a Stable Diffusion 3 transformer or a UNet (``kind``: the pipeline's class name) and
    casts the inputs to the denoiser's dtype; ``model`` is the wrapped diffusers module.
    """

    def __init__(self, model: torch.nn.Module, kind: str) -> None:
        super().__init__()
        if kind not in SUPPORTED:
            raise ModelError(f"{kind} is not a pipeline automodel trains yet; supported: {', '.join(SUPPORTED)}")
        self.model = model
        self.kind = kind

    def forward(
        self,
        latents: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: torch.Tensor,
        pooled_prompt_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the denoiser's prediction for ``latents`` at ``timesteps`` (the scheduler's scale)."""
        dtype = self.model.dtype
        if self.kind == SD3:
            return self.model(
                hidden_states=latents.to(dtype),
                timestep=timesteps,
                encoder_hidden_states=prompt_embeds.to(dtype),
                pooled_projections=pooled_prompt_embeds.to(dtype),
                return_dict=False,
            )[0]
        return self.model(
            latents.to(dtype), timesteps, encoder_hidden_states=prompt_embeds.to(dtype), return_dict=False
        )[0]


def sampling_arguments(
    pipeline: Any,
    *,
    num_inference_steps: int = 20,
    guidance_scale: float = 1.0,
    height: int | None = None,
    width: int | None = None,
    max_sequence_length: int = 256,
) -> dict[str, Any]:
    """Return the keyword arguments a pipeline call needs to reproduce automodel's sample images.

    Prompt and generator are not included; ``sample_images`` adds them.
    """
    arguments: dict[str, Any] = {
        "num_inference_steps": num_inference_steps,
        "guidance_scale": guidance_scale,
        "height": height,
        "width": width,
        "output_type": "np",
    }
    if pipeline_kind(pipeline) == SD3:
        arguments["max_sequence_length"] = max_sequence_length
    return arguments


@torch.no_grad()
def sample_images(pipeline: Any, prompts: Sequence[str], *, seed: int = 0, **arguments: Any) -> Any:
    """Sample one image per prompt with the pipeline, prompt ``i`` from a CPU generator seeded ``seed + i``.

    Args:
        pipeline: a diffusers pipeline with every component loaded.
        prompts: the prompts.
        seed: the first generator's seed.
        **arguments: ``sampling_arguments(...)`` (steps, guidance, size, ``output_type``).

    Returns:
        A float array [N, H, W, 3] in [0, 1] (``output_type="np"``) or what ``output_type`` asks for.
    """
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    return pipeline(list(prompts), generator=generators, **arguments).images
