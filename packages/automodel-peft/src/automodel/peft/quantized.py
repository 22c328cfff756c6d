"""Reading quantized (bitsandbytes 4-bit) Linear weights without importing bitsandbytes unless one is present."""

from __future__ import annotations

import torch
from torch import nn


def is_quantized(linear: nn.Linear) -> bool:
    """True when ``linear`` holds bitsandbytes 4-bit weights (a ``Params4bit`` with a quantization state)."""
    return getattr(linear.weight, "quant_state", None) is not None


def dense_weight(linear: nn.Linear) -> torch.Tensor:
    """Return the (out, in) weight of ``linear`` as a floating tensor, dequantizing 4-bit weights."""
    if not is_quantized(linear):
        return linear.weight
    import bitsandbytes.functional as bnb_functional

    return bnb_functional.dequantize_4bit(linear.weight.data, linear.weight.quant_state)


def compute_dtype(linear: nn.Linear) -> torch.dtype:
    """The floating dtype ``linear`` computes in: its weight dtype, or a 4-bit layer's compute dtype (fp32 if unset)."""
    if linear.weight.dtype.is_floating_point:
        return linear.weight.dtype
    return getattr(linear, "compute_dtype", None) or torch.float32
