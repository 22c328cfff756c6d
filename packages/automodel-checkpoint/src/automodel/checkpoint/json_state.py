"""Reversible JSON for the ``state_dict()`` of schedulers, data loaders and other small stateful objects.

Plain JSON values pass through. Tuples, dicts with non-string keys, bytes and tensors are
written as one-key objects (``{"__tuple__": [...]}``, ``{"__dict__": [[key, value], ...]}``,
``{"__bytes__": "<base64>"}``, ``{"__tensor__": {"dtype", "shape", "data"}}``) and read back
as they were. Anything else is refused with the path of the value inside the state.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import torch

from automodel.checkpoint.errors import CheckpointError, brief

_TAGS = ("__tuple__", "__dict__", "__bytes__", "__tensor__")


def encode_state(value: Any, where: str) -> Any:
    """Return ``value`` as JSON-ready data that ``decode_state`` turns back into it.

    Args:
        value: a state dict (nested dicts, lists, tuples, str, int, float, bool, None, bytes, tensors).
        where: how error messages name the value, e.g. ``stateful['dataloader']``.

    Raises:
        CheckpointError: a value of another type, named by its path inside the state.
    """
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, list):
        return [encode_state(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {"__tuple__": [encode_state(v, f"{where}[{i}]") for i, v in enumerate(value)]}
    if isinstance(value, dict):
        if all(isinstance(k, str) for k in value) and not (len(value) == 1 and next(iter(value)) in _TAGS):
            return {k: encode_state(v, f"{where}[{k!r}]") for k, v in value.items()}
        pairs = [[encode_state(k, f"{where} key"), encode_state(v, f"{where}[{k!r}]")] for k, v in value.items()]
        return {"__dict__": pairs}
    if isinstance(value, (bytes, bytearray)):
        return {"__bytes__": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, torch.Tensor):
        flat = value.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8)
        return {
            "__tensor__": {
                "dtype": str(value.dtype).removeprefix("torch."),
                "shape": list(value.shape),
                "data": base64.b64encode(bytes(flat.tolist())).decode("ascii"),
            }
        }
    raise CheckpointError(
        f"{where} is a {type(value).__module__}.{type(value).__qualname__}, which a JSON checkpoint cannot hold; "
        "make that object's state_dict() return plain values (numbers, strings, lists, dicts, tensors)"
    )


def decode_state(value: Any) -> Any:
    """Return the state that ``encode_state`` turned into ``value``."""
    if isinstance(value, list):
        return [decode_state(v) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1 and next(iter(value)) in _TAGS:
        tag, body = next(iter(value.items()))
        if tag == "__tuple__":
            return tuple(decode_state(v) for v in body)
        if tag == "__dict__":
            return {decode_state(k): decode_state(v) for k, v in body}
        if tag == "__bytes__":
            return base64.b64decode(body)
        dtype = getattr(torch, body["dtype"], None)
        if not isinstance(dtype, torch.dtype):
            raise CheckpointError(f"a saved tensor names dtype {body['dtype']!r}, which torch does not have")
        raw = bytearray(base64.b64decode(body["data"]))
        flat = torch.frombuffer(raw, dtype=torch.uint8) if raw else torch.empty(0, dtype=torch.uint8)
        return flat.view(dtype).reshape(body["shape"]).clone()
    return {k: decode_state(v) for k, v in value.items()}


def read_json_file(path: Path) -> Any:
    """Return the JSON value a checkpoint file holds.

    Raises:
        CheckpointError: the file cannot be read or is not JSON (truncated, corrupted), naming it.
    """
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} cannot be read as JSON ({brief(exc)}); the checkpoint is corrupted or was not written by "
            "automodel-checkpoint: restore from another step"
        ) from None
