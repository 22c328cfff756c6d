"""The ``peft:`` section of the VLM recipe: LoRA on the language model by default, adapters in HF PEFT format."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from automodel.checkpoint import save_hf_weights, write_model_metadata
from automodel.config import ConfigNode, build_section, config_error, errors_named_by
from automodel.peft import LoRAConfig, apply_lora, lora_modules, save_adapter
from automodel.recipes.vlm.freezing import PART_NAMES, find_part


def build_peft(cfg: ConfigNode) -> LoRAConfig | None:
    """Build ``peft:`` (``_target_: automodel.peft.LoRAConfig``), or None when absent."""
    section = cfg.get("peft")
    if section is None:
        return None
    lora = build_section(cfg, "peft")
    if not isinstance(lora, LoRAConfig):
        raise config_error(section, f"builds a {type(lora).__name__}, not a LoRA config", "_target_")
    if lora.save_merged:
        raise config_error(section, "save_merged is not supported by the VLM recipe yet", "save_merged")
    return lora


def _path_of(model: torch.nn.Module, part: torch.nn.Module) -> str:
    return next(path for path, module in model.named_modules() if module is part)


def add_adapters(model: torch.nn.Module, lora: LoRAConfig, cfg: ConfigNode) -> str:
    """Apply LoRA to ``model`` in place and return a one-line summary.

    With ``exclude_modules`` left unset, the vision tower and the multimodal projector are
    excluded, so LoRA adapts the language model; set ``exclude_modules`` (``[]`` for none) and
    ``target_modules`` to reach them.
    """
    if lora.exclude_modules is None:
        parts = [find_part(model, PART_NAMES[key]) for key in ("freeze_vision_tower", "freeze_multimodal_projector")]
        excluded = [_path_of(model, part) for part in parts if part is not None]
        lora = dataclasses.replace(lora, exclude_modules=excluded or None)
    with errors_named_by(cfg, "peft"):
        apply_lora(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"LoRA on {len(lora_modules(model))} modules: {trainable:,} of {total:,} parameters trainable"


def save_base_model(model: torch.nn.Module, processor: Any, out_dir: Path) -> Path:
    """Write the (not yet adapted) model once as an HF model directory, for the adapter to point at.

    Written under a temporary name and renamed; an existing directory (a resumed run) is kept.
    """
    if out_dir.is_dir():
        return out_dir
    partial = out_dir.with_name(out_dir.name + ".partial")
    save_hf_weights(model.state_dict(), partial)
    write_model_metadata(model, processor, partial)
    partial.rename(out_dir)
    return out_dir


def write_adapter(model: torch.nn.Module, model_dir: Path, base: str | None, state: dict | None) -> None:
    """Write ``adapter_model.safetensors`` and ``adapter_config.json`` (HF PEFT format, no task type, so
    ``peft.PeftModel.from_pretrained`` wraps the VLM as it is) into ``model_dir``."""
    save_adapter(model, model_dir, base_model_name_or_path=base, task_type=None, state=state)
