"""automodel.peft: LoRA, DoRA and QLoRA for any torch.nn.Module, with adapters in the Hugging Face PEFT format."""

from automodel.peft.errors import PeftError
from automodel.peft.hf_peft_format import adapter_state_dict, load_adapter, portable_base_reference, save_adapter
from automodel.peft.lora import (
    LoRAConfig,
    LoRALinear,
    apply_lora,
    lora_modules,
    merge_lora,
    remove_lora,
    target_module_names,
    unmerge_lora,
)
from automodel.peft.parameters import trainable_parameter_count
from automodel.peft.quantization import QuantizationConfig, quantize_base_weights

__version__ = "0.3.0"

__all__ = [
    "LoRAConfig",
    "LoRALinear",
    "PeftError",
    "QuantizationConfig",
    "adapter_state_dict",
    "apply_lora",
    "load_adapter",
    "lora_modules",
    "merge_lora",
    "portable_base_reference",
    "quantize_base_weights",
    "remove_lora",
    "save_adapter",
    "target_module_names",
    "trainable_parameter_count",
    "unmerge_lora",
]
