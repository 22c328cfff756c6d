"""Turn a user's dtype spelling ("auto", "bf16", torch.float32, ...) into a torch.dtype."""

from __future__ import annotations

import torch

from automodel.models.errors import ModelError, closest_names

DTYPES_BY_NAME = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}


def resolve_torch_dtype(value: str | torch.dtype) -> torch.dtype:
    """Return the torch.dtype a model should be built in.

    Args:
        value: ``"auto"`` (bf16 when CUDA is available, fp32 otherwise: bf16 matmuls are
            far slower than fp32 on most CPUs), one of ``bf16``/``bfloat16``/``fp16``/
            ``float16``/``fp32``/``float32`` (case-insensitive, ``torch.`` prefix allowed),
            or one of the torch dtypes those names stand for.

    Returns:
        ``torch.bfloat16``, ``torch.float16`` or ``torch.float32``.

    Raises:
        ModelError: for any other value, naming it and the accepted spellings.
    """
    if isinstance(value, torch.dtype) and value in DTYPES_BY_NAME.values():
        return value
    if isinstance(value, str):
        name = value.strip().lower().removeprefix("torch.")
        if name == "auto":
            return torch.bfloat16 if torch.cuda.is_available() else torch.float32
        if name in DTYPES_BY_NAME:
            return DTYPES_BY_NAME[name]
    accepted = ["auto", *DTYPES_BY_NAME]
    close = closest_names(value, accepted, count=1) if isinstance(value, str) else []
    hint = f"did you mean `{close[0]}`? " if close else ""
    raise ModelError(
        f"torch_dtype {value!r} is not supported; {hint}use one of {', '.join(accepted)} "
        "or torch.bfloat16 / torch.float16 / torch.float32."
    )
