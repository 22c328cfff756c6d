"""Telling whether a checkpoint belongs to the model being trained: a stable hash of its config."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from automodel.checkpoint.errors import CheckpointError
from automodel.checkpoint.json_state import read_json_file
from automodel.checkpoint.layout import MODEL_DIR, TRAIN_STATE

FINGERPRINT_KEY = "model_config_fingerprint"
VOLATILE_KEYS = frozenset(
    {
        "transformers_version",
        "_name_or_path",
        "_commit_hash",
        "dtype",
        "torch_dtype",
        "_attn_implementation",
        "_attn_implementation_autoset",
        "attn_implementation",
    }
)


def config_fingerprint(config_dict: Mapping[str, Any]) -> str:
    """Return a 16-hex-digit hash of a model config (e.g. ``model.config.to_dict()``).

    Keys that change without changing the model (``transformers_version``,
    ``_name_or_path``, ``dtype``/``torch_dtype``, the attention implementation, ...) are
    left out at every level, and key order does not matter, so the same architecture and
    sizes give the same fingerprint across library versions, paths and precisions.
    """
    return hashlib.sha256(json.dumps(_stable(config_dict), sort_keys=True, default=str).encode()).hexdigest()[:16]


def check_same_model(step_dir: Path, fingerprint: str, describe_current: str) -> None:
    """Raise when ``step_dir``'s ``train_state.json`` records a different model config fingerprint.

    A checkpoint that records none is accepted.

    Raises:
        CheckpointError: naming the saved config (``model/config.json`` of the step, or its
            ``train_state.json``) and the current one (``describe_current``); or a
            ``train_state.json`` that is not JSON.
    """
    train_state = read_json_file(step_dir / TRAIN_STATE)
    saved = train_state.get(FINGERPRINT_KEY) if isinstance(train_state, dict) else None
    if saved is None or saved == fingerprint:
        return
    config = step_dir / MODEL_DIR / "config.json"
    saved_config = config if config.is_file() else step_dir / TRAIN_STATE
    raise CheckpointError(
        f"{step_dir} was saved from a different model: its config is {saved_config} (fingerprint {saved}), "
        f"the current model's is {describe_current} (fingerprint {fingerprint}); restore_from a checkpoint of "
        "this model, or set restore_from: null to start fresh"
    )


def _stable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _stable(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, (list, tuple)):
        return [_stable(v) for v in value]
    return value
