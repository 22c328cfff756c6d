"""Turning image-caption batches into what the training step reads (latents and prompt embeddings),
and the fingerprint that ties a latent cache to the encoders that made it."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import torch

from automodel.models import encode_image_posteriors, encode_prompts, read_model_index
from automodel.recipes.diffusion.pipeline_files import local_pipeline_folder

ENCODERS = ("vae", "text_encoder", "text_encoder_2", "text_encoder_3")


def encode_batch(pipeline: Any, batch: dict, device: torch.device, max_sequence_length: int) -> dict:
    """Return ``{"indices", "latents", "latents_std", prompt embeddings...}`` for a collated image-caption batch.

    ``latents`` and ``latents_std`` are the VAE posterior's mean and standard deviation on the
    denoiser's scale (the objective trains on the mean or on a sample, as ``posterior`` says).
    """
    pixels = batch["pixel_values"].to(device)
    encoded = {"indices": batch["indices"], **encode_image_posteriors(pipeline, pixels)}
    encoded.update(encode_prompts(pipeline, batch["captions"], max_sequence_length=max_sequence_length))
    return encoded


def null_conditioning(pipeline: Any, max_sequence_length: int) -> dict[str, torch.Tensor]:
    """The empty caption's prompt embeddings, one sample without the batch dimension (for caption dropout)."""
    return {k: v[0] for k, v in encode_prompts(pipeline, [""], max_sequence_length=max_sequence_length).items()}


def encoder_fingerprint(source: str, max_sequence_length: int) -> dict[str, Any]:
    """What a latent cache depends on: the VAE and text encoders of ``source`` and the prompt length.

    Each encoder is named by a hash of its ``config.json`` and of its weight files' safetensors
    headers (names, shapes, dtypes and byte offsets), read without loading any weights.
    Components absent from the pipeline are left out.
    """
    folder = local_pipeline_folder(source, ["model_index.json", "*.json", "*.safetensors"])
    index = read_model_index(str(folder))
    fingerprint: dict[str, Any] = {"pipeline": index["_class_name"], "max_sequence_length": max_sequence_length}
    for name in ENCODERS:
        entry = index.get(name)
        if isinstance(entry, list) and entry and entry[0] is not None and (folder / name).is_dir():
            fingerprint[name] = _component_hash(folder / name)
    return fingerprint


def _component_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.is_file():
        digest.update(json.dumps(json.loads(config.read_text(encoding="utf-8")), sort_keys=True).encode())
    for file in sorted(folder.glob("*.safetensors")):
        with file.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            digest.update(file.name.encode())
            digest.update(handle.read(size))
    return digest.hexdigest()[:16]
