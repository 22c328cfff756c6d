"""QLoRA base weights: nn.Linear modules replaced by bitsandbytes 4-bit (NF4/FP4) layers on CUDA."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import torch
from torch import nn

from automodel.peft.dtypes import parse_dtype
from automodel.peft.errors import PeftError
from automodel.peft.lora.model import lora_modules
from automodel.peft.quantized import is_quantized
from automodel.peft.targets import output_embedding_paths

QUANT_TYPES = ("nf4", "fp4")


@dataclass
class QuantizationConfig:
    """How :func:`quantize_base_weights` stores base weights; usable as a YAML ``_target_``.

    Args:
        load_in_4bit: 4-bit weights (the only mode; kept for parity with transformers' BitsAndBytesConfig).
        quant_type: ``"nf4"`` (QLoRA's NormalFloat4) or ``"fp4"``.
        compute_dtype: dtype the 4-bit matmuls run in ("bf16", "fp16", "fp32" or a torch.dtype).
        double_quant: also quantize the quantization constants (QLoRA's double quantization).
    """

    load_in_4bit: bool = True
    quant_type: str = "nf4"
    compute_dtype: str | torch.dtype = "bf16"
    double_quant: bool = True

    def __post_init__(self) -> None:
        """Reject settings bitsandbytes 4-bit layers cannot take."""
        if self.load_in_4bit is not True:
            raise PeftError("QuantizationConfig supports 4-bit base weights only; set load_in_4bit=True.")
        if self.quant_type not in QUANT_TYPES:
            raise PeftError(f"quant_type must be one of {QUANT_TYPES}, got {self.quant_type!r}.")
        self.compute_dtype = parse_dtype(self.compute_dtype, "compute_dtype")


def quantize_base_weights(model: nn.Module, config: QuantizationConfig) -> nn.Module:
    """Replace the model's nn.Linear modules (LoRA base layers included) by 4-bit bitsandbytes layers; return it.

    Adapter weights (lora_A, lora_B) and the output embedding stay as they are. The quantized layers
    live on the current CUDA device; move the rest with ``model.to("cuda")``. Call it before or after
    apply_lora. Raises PeftError when CUDA or bitsandbytes is missing.
    """
    bnb = _bitsandbytes()
    device = torch.device("cuda", torch.cuda.current_device())
    skipped = output_embedding_paths(model)
    adapters = {id(m) for layer in lora_modules(model).values() for m in (layer.lora_A, layer.lora_B)}
    targets = [
        path
        for path, module in model.named_modules()
        if path
        and isinstance(module, nn.Linear)
        and path not in skipped
        and id(module) not in adapters
        and not is_quantized(module)
    ]
    for path in targets:
        parent_path, _, name = path.rpartition(".")
        parent = model.get_submodule(parent_path)
        setattr(parent, name, _quantized_linear(bnb, getattr(parent, name), config, device))
    return model


def _quantized_linear(
    bnb: ModuleType, linear: nn.Linear, config: QuantizationConfig, device: torch.device
) -> nn.Module:
    """A bitsandbytes Linear4bit holding ``linear``'s weight, quantized on ``device``."""
    layer = bnb.nn.Linear4bit(
        linear.in_features,
        linear.out_features,
        bias=linear.bias is not None,
        compute_dtype=config.compute_dtype,
        compress_statistics=config.double_quant,
        quant_type=config.quant_type,
        device="meta",
    )
    layer.weight = bnb.nn.Params4bit(
        linear.weight.data,
        requires_grad=False,
        compress_statistics=config.double_quant,
        quant_type=config.quant_type,
        module=layer,
    ).to(device)
    if linear.bias is not None:
        layer.bias = nn.Parameter(linear.bias.data.to(device), requires_grad=linear.bias.requires_grad)
    return layer.train(linear.training)


def _bitsandbytes() -> ModuleType:
    """The bitsandbytes module, or PeftError when CUDA or bitsandbytes is missing."""
    if not torch.cuda.is_available():
        raise PeftError(
            "QLoRA (4-bit base weights) needs a CUDA GPU and none is available; train LoRA on the "
            "full-precision model instead, or run on a machine with CUDA."
        )
    try:
        import bitsandbytes
    except ImportError as error:
        raise PeftError(
            "QLoRA (4-bit base weights) needs bitsandbytes: pip install 'automodel-peft[qlora]' "
            f"(or pip install bitsandbytes). Import failed: {error}"
        ) from error
    return bitsandbytes
