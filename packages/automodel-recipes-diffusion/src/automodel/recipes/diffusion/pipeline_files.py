"""Writing a step's ``model/``: a diffusers pipeline folder (frozen components linked from the source,
the trained denoiser written fresh), EMA weights beside it, or LoRA weights in the diffusers format."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from automodel.models import MODEL_INDEX

LORA_WEIGHTS = "pytorch_lora_weights.safetensors"


def local_pipeline_folder(source: str, allow_patterns: list[str] | None = None) -> Path:
    """The local folder of a pipeline source: the folder itself, or the hub snapshot in the local cache.

    ``allow_patterns`` limits what a hub snapshot fetches (all files by default).
    """
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(source, allow_patterns=allow_patterns))


def link_frozen_components(source: Path, model_dir: Path, denoiser_name: str) -> None:
    """Put ``model_index.json`` and every component folder but the denoiser's from ``source`` into ``model_dir``.

    Files are hard-linked where the file system allows it (a 10 GB text encoder is not copied at
    every checkpoint) and copied otherwise.
    """
    shutil.copy2(source / MODEL_INDEX, model_dir / MODEL_INDEX)
    index = json.loads((source / MODEL_INDEX).read_text(encoding="utf-8"))
    for name, entry in index.items():
        folder = source / name
        if name.startswith("_") or name == denoiser_name or not isinstance(entry, list) or not folder.is_dir():
            continue
        shutil.copytree(folder, model_dir / name, copy_function=_link_or_copy, dirs_exist_ok=True)


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(os.path.realpath(src), dst)
    except OSError:
        shutil.copy2(src, dst)


def write_denoiser(
    denoiser: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], out_dir: Path, max_shard_size: str | int
) -> None:
    """Write the denoiser's ``config.json`` and ``state_dict`` as diffusers does (``diffusion_pytorch_model*``).

    The weights go through a copy of the model built on the meta device and given the
    tensors, so diffusers' own ``save_pretrained`` names and shards the files.
    """
    with torch.device("meta"):
        shell = type(denoiser).from_config(denoiser.config)
    shell.load_state_dict(dict(state_dict), assign=True, strict=True)
    shell.save_pretrained(out_dir, max_shard_size=max_shard_size, safe_serialization=True)


def write_lora(
    pipeline_class: type,
    state: Mapping[str, torch.Tensor],
    settings: Mapping[str, Any],
    out_dir: Path,
    denoiser_name: str,
) -> None:
    """Write LoRA weights as ``pipe.load_lora_weights`` reads them, alpha included in the header's metadata.

    Args:
        pipeline_class: the diffusers pipeline class (its ``save_lora_weights`` names the keys).
        state: the adapter in HF PEFT key names relative to the denoiser (``...lora_A.weight``).
        settings: ``r``, ``lora_alpha``, ``target_modules`` (and ``use_rslora``, ``use_dora``).
        out_dir: the folder to write ``pytorch_lora_weights.safetensors`` into.
        denoiser_name: ``transformer`` or ``unet``.
    """
    layers = {key.removeprefix("base_model.model."): value.contiguous() for key, value in state.items()}
    pipeline_class.save_lora_weights(
        out_dir,
        **{f"{denoiser_name}_lora_layers": layers, f"{denoiser_name}_lora_adapter_metadata": dict(settings)},
        safe_serialization=True,
    )
