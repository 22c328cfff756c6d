"""The ``peft:`` section of the diffusion recipe: LoRA on the denoiser's attention projections by default."""

from __future__ import annotations

from typing import Any

import torch

from automodel.config import ConfigNode, build_section, config_error, errors_named_by
from automodel.peft import LoRAConfig, apply_lora, lora_modules

ATTENTION_PROJECTIONS = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out")


def build_lora(cfg: ConfigNode) -> LoRAConfig | None:
    """Build ``peft:`` (``_target_: automodel.peft.LoRAConfig``), or None when absent.

    Without ``target_modules`` (and ``match_all_linear``) LoRA goes on the attention projections.
    """
    section = cfg.get("peft")
    if section is None:
        return None
    chosen = section.get("target_modules") is not None or bool(section.get("match_all_linear"))
    defaults = {} if chosen else {"target_modules": list(ATTENTION_PROJECTIONS)}
    lora = build_section(cfg, "peft", **defaults)
    if not isinstance(lora, LoRAConfig):
        raise config_error(section, f"builds a {type(lora).__name__}, not a LoRA config", "_target_")
    for unsupported in ("save_merged", "use_dora"):
        if getattr(lora, unsupported):
            raise config_error(section, f"{unsupported} is not supported by the diffusion recipe yet", unsupported)
    return lora


def add_lora(denoiser: torch.nn.Module, lora: LoRAConfig, cfg: ConfigNode) -> str:
    """Apply LoRA to the denoiser in place (its own weights frozen) and return a one-line summary."""
    denoiser.requires_grad_(False)
    with errors_named_by(cfg, "peft"):
        apply_lora(denoiser, lora)
    trainable = sum(p.numel() for p in denoiser.parameters() if p.requires_grad)
    total = sum(p.numel() for p in denoiser.parameters())
    return f"LoRA on {len(lora_modules(denoiser))} modules: {trainable:,} of {total:,} parameters trainable"


def lora_metadata(lora: LoRAConfig, denoiser: torch.nn.Module) -> dict[str, Any]:
    """The adapter settings diffusers stores in the LoRA file's header (``lora_adapter_metadata``): rank, alpha
    and the adapted modules of ``denoiser`` by their full names."""
    return {
        "r": lora.dim,
        "lora_alpha": lora.alpha,
        "target_modules": sorted(lora_modules(denoiser)),
        "use_rslora": lora.use_rslora,
        "use_dora": False,
        "lora_dropout": lora.dropout,
    }
