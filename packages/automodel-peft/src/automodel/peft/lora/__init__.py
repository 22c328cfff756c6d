"""LoRA and DoRA: the config, the adapted Linear layer, and applying/merging/removing adapters on a model."""

from automodel.peft.lora.config import LoRAConfig
from automodel.peft.lora.layer import LoRALinear
from automodel.peft.lora.model import (
    apply_lora,
    lora_modules,
    merge_lora,
    remove_lora,
    target_module_names,
    unmerge_lora,
)

__all__ = [
    "LoRAConfig",
    "LoRALinear",
    "apply_lora",
    "lora_modules",
    "merge_lora",
    "remove_lora",
    "target_module_names",
    "unmerge_lora",
]
