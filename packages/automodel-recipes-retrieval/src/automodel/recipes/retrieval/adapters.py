"""The ``peft:`` section of the retrieval recipe: LoRA on a bi-encoder's backbone, saved in HF PEFT format.

The adapter is written relative to the backbone (a ``transformers.AutoModel``), beside the
sentence-transformers files and the tokenizer, so ``SentenceTransformer(step/model)`` loads the
base model named by ``base_model_name_or_path`` and applies the adapter, with no automodel code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from automodel.checkpoint import save_hf_weights, write_model_metadata
from automodel.config import ConfigNode, build_section, config_error, errors_named_by
from automodel.models import BiEncoder
from automodel.peft import LoRAConfig, apply_lora, lora_modules, save_adapter


def build_peft(cfg: ConfigNode, model: torch.nn.Module) -> LoRAConfig | None:
    """Build ``peft:`` (``_target_: automodel.peft.LoRAConfig``) for a bi-encoder, or None when absent."""
    section = cfg.get("peft")
    if section is None:
        return None
    if not isinstance(model, BiEncoder):
        raise config_error(
            cfg,
            "LoRA is supported for bi-encoders only (a reranker's new scoring head must train in full)",
            "peft",
            "remove the section, or train the cross-encoder without it",
        )
    lora = build_section(cfg, "peft")
    if not isinstance(lora, LoRAConfig):
        raise config_error(section, f"builds a {type(lora).__name__}, not a LoRA config", "_target_")
    if lora.save_merged:
        raise config_error(section, "save_merged is not supported by the retrieval recipe yet", "save_merged")
    return lora


def add_adapters(model: BiEncoder, lora: LoRAConfig, cfg: ConfigNode) -> str:
    """Apply LoRA to the bi-encoder's backbone in place and return a one-line summary."""
    with errors_named_by(cfg, "peft"):
        apply_lora(model.backbone, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"LoRA on {len(lora_modules(model))} modules: {trainable:,} of {total:,} parameters trainable"


def base_model_source(model: BiEncoder) -> str | None:
    """The path or hub id the backbone was loaded from, or None for a model built from a config."""
    return getattr(model.config, "_name_or_path", None) or None


def save_base_model(model: BiEncoder, tokenizer: Any, out_dir: Path) -> Path:
    """Write the (not yet adapted) backbone once as an HF model folder, for the adapter to point at.

    Written under a temporary name and renamed; an existing folder (a resumed run) is kept.
    """
    if out_dir.is_dir():
        return out_dir
    partial = out_dir.with_name(out_dir.name + ".partial")
    save_hf_weights(model.backbone.state_dict(), partial)
    write_model_metadata(model.backbone, tokenizer, partial)
    partial.rename(out_dir)
    return out_dir


def write_adapter(model: BiEncoder, model_dir: Path, base: str | None, state: dict | None) -> None:
    """Write ``adapter_model.safetensors`` and ``adapter_config.json`` (HF PEFT format, keys relative to the
    backbone, no task type) into ``model_dir``; ``state`` is the adapter gathered from the shards."""
    save_adapter(model.backbone, model_dir, base_model_name_or_path=base, task_type=None, state=state)
