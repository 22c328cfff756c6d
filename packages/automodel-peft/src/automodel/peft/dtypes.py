"""Reading a dtype from a YAML-friendly name ("bf16", "float32") or a torch.dtype."""

from __future__ import annotations

import torch

from automodel.peft.errors import PeftError

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
}


def parse_dtype(value: str | torch.dtype, field: str) -> torch.dtype:
    """Return the floating torch.dtype that ``value`` names; ``field`` names the setting in the error."""
    if isinstance(value, torch.dtype):
        if not value.is_floating_point:
            raise PeftError(f"{field}: {value} is not a floating dtype; use one of {', '.join(DTYPES)}")
        return value
    name = str(value).removeprefix("torch.").lower()
    if name not in DTYPES:
        raise PeftError(f"{field}: unknown dtype {value!r}; use one of {', '.join(DTYPES)}")
    return DTYPES[name]
