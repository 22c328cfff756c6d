"""The recipe side of PEFT: the `peft:` section, adapter checkpoints and the optional merged model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from automodel.checkpoint import save_hf_weights, write_model_metadata
from automodel.config import ConfigNode, build_section, config_error, errors_named_by
from automodel.peft import (
    LoRAConfig,
    adapter_state_dict,
    apply_lora,
    lora_modules,
    merge_lora,
    quantize_base_weights,
    save_adapter,
    unmerge_lora,
)

ADAPTER_PARTS = (".lora_A.", ".lora_B.", "lora_magnitude_vector")


def build_peft(cfg: ConfigNode) -> LoRAConfig | None:
    """Build ``peft:`` (``_target_: automodel.peft.LoRAConfig``; its ``save_merged`` asks checkpoints for a
    merged full model too), or None when absent."""
    section = cfg.get("peft")
    if section is None:
        return None
    lora = build_section(cfg, "peft")
    if not isinstance(lora, LoRAConfig):
        raise config_error(
            section,
            f"builds a {type(lora).__name__}, not a LoRA config",
            "_target_",
            "use _target_: automodel.peft.LoRAConfig",
        )
    return lora


def add_adapters(model: torch.nn.Module, lora: LoRAConfig, cfg: ConfigNode) -> str:
    """Apply LoRA to ``model`` in place (only adapters stay trainable); return a one-line summary."""
    with errors_named_by(cfg, "peft"):
        apply_lora(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return f"LoRA on {len(lora_modules(model))} modules: {trainable:,} of {total:,} parameters trainable"


def quantize_base(model: torch.nn.Module, cfg: ConfigNode) -> None:
    """Apply the ``quantization:`` section (``_target_: automodel.peft.QuantizationConfig``): 4-bit NF4
    base weights for QLoRA. Needs CUDA and bitsandbytes; otherwise a ConfigError naming the section."""
    with errors_named_by(cfg, "quantization"):
        quantize_base_weights(model, build_section(cfg, "quantization"))


def gather_adapter(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Return the adapter tensors whole (gathered from FSDP2/TP shards); every rank must call it together."""
    return adapter_state_dict(model)


def write_adapter(
    model: torch.nn.Module, model_dir: Path, base_model_name_or_path: str | None, state: dict | None = None
) -> None:
    """Write ``adapter_model.safetensors`` and ``adapter_config.json`` in HF PEFT format into ``model_dir``.

    ``state`` is ``gather_adapter``'s result when the adapters are sharded over processes.
    """
    save_adapter(model, model_dir, base_model_name_or_path=base_model_name_or_path, state=state)


def merged_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Return the model's state with adapters folded in, under the plain HF names (no ``base_layer``).

    The live weights are restored bit for bit afterwards (a merge then unmerge alone would
    leave rounding behind and break exact resume). Only merged weights are copied, so tied
    weights still share storage and are written once.
    """
    originals = {name: module.base_layer.weight.detach().clone() for name, module in lora_modules(model).items()}
    merge_lora(model)
    try:
        merged = {
            key.replace(".base_layer.", "."): tensor.detach().clone() if ".base_layer." in key else tensor.detach()
            for key, tensor in model.state_dict().items()
            if not any(part in key for part in ADAPTER_PARTS)
        }
    finally:
        unmerge_lora(model)
        with torch.no_grad():
            for name, module in lora_modules(model).items():
                module.base_layer.weight.copy_(originals[name])
    return merged


def save_base_model(model: torch.nn.Module, tokenizer: Any, out_dir: Path, max_shard_size: str) -> Path:
    """Write the (not yet adapted) base model once as an HF model directory and return it.

    A PEFT run on a model built from a config has no base to point its adapter at; this
    gives ``adapter_config.json`` a ``base_model_name_or_path`` that ``peft`` can load.
    Written under a temporary name and renamed; an existing directory (a resumed run) is kept.
    """
    if out_dir.is_dir():
        return out_dir
    partial = out_dir.with_name(out_dir.name + ".partial")
    write_hf_model(model.state_dict(), model, tokenizer, partial, max_shard_size)
    partial.rename(out_dir)
    return out_dir


def write_hf_model(state: dict, model: torch.nn.Module, tokenizer: Any, out_dir: Path, max_shard_size: str) -> None:
    """Write ``state`` as consolidated safetensors plus the model's configs and the tokenizer into ``out_dir``."""
    save_hf_weights(state, out_dir, max_shard_size=max_shard_size)
    write_model_metadata(model, tokenizer, out_dir)


def write_merged_model(model: torch.nn.Module, tokenizer: Any, out_dir: Path, max_shard_size: str) -> None:
    """Write a full HF model directory with the adapters merged into the weights."""
    write_hf_model(merged_state_dict(model), model, tokenizer, out_dir, max_shard_size)
