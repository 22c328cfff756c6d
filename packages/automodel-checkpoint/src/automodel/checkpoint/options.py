"""Parsing the two settings that shape the weight files: ``max_shard_size`` and ``save_dtype``."""

from __future__ import annotations

import re

import torch

from automodel.checkpoint.errors import CheckpointError

_UNITS = {
    "B": 1,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
    "TIB": 2**40,
}
_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}


def parse_max_shard_size(value: str | int) -> int:
    """Return ``max_shard_size`` in bytes: an int of bytes, or "5GB", "500MB", "100KB", "2GiB" (decimal units as HF)."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value > 0:
            return value
    elif isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]I?B|B)\s*", value.upper())
        if match and float(match.group(1)) > 0:
            return int(float(match.group(1)) * _UNITS[match.group(2)])
    raise CheckpointError(
        f"max_shard_size {value!r} is not a size; use a positive number of bytes or a string such as "
        '"5GB", "500MB", "100KB" or "2GiB"'
    )


def parse_save_dtype(value: str | torch.dtype | None) -> torch.dtype | None:
    """Return the dtype floating tensors are saved in ("bf16", "fp16", "fp32", a torch dtype); None keeps each one's."""
    if value is None:
        return None
    if isinstance(value, torch.dtype) and value.is_floating_point:
        return value
    if isinstance(value, str) and value.lower().removeprefix("torch.") in _DTYPES:
        return _DTYPES[value.lower().removeprefix("torch.")]
    raise CheckpointError(
        f"save_dtype {value!r} is not a floating dtype; use one of bf16, fp16, fp32 (or bfloat16, float16, "
        "float32, a torch floating dtype), or null to keep each tensor's dtype"
    )
