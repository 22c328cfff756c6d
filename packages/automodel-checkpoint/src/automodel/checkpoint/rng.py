"""The random number generators of this process, as JSON: Python, NumPy (when in use), torch CPU and CUDA."""

from __future__ import annotations

import base64
import importlib
import random
import sys
from typing import Any

import torch


def capture_rng_state() -> dict[str, Any]:
    """Return this process's generator states as JSON-ready data (no pickle).

    NumPy's global generator is included when NumPy has been imported (nothing draws from
    it otherwise); CUDA's, for the current device, once this process has initialized CUDA.
    """
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "torch": _encode(torch.get_rng_state()),
    }
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        name, keys, pos, has_gauss, cached = numpy.random.get_state(legacy=True)
        state["numpy"] = {
            "bit_generator": name,
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        }
    if torch.cuda.is_initialized():
        device = torch.cuda.current_device()
        state["cuda"] = {"device": device, "state": _encode(torch.cuda.get_rng_state(device))}
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set this process's generators from ``capture_rng_state()`` output.

    A CUDA state is restored only where CUDA is available (to the current device).
    """
    python = state["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))
    torch.set_rng_state(_decode(state["torch"]))
    if "numpy" in state:
        numpy = importlib.import_module("numpy")
        saved = state["numpy"]
        keys = numpy.asarray(saved["keys"], dtype=numpy.uint32)
        numpy.random.set_state(
            (saved["bit_generator"], keys, saved["pos"], saved["has_gauss"], saved["cached_gaussian"])
        )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(_decode(state["cuda"]["state"]), torch.cuda.current_device())


def _encode(byte_tensor: torch.Tensor) -> str:
    return base64.b64encode(bytes(byte_tensor.tolist())).decode("ascii")


def _decode(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)
