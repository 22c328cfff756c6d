"""Writing the model directory of a step (DESIGN.md section 5) atomically, and the `latest` pointer."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automodel.config import ConfigNode


@dataclass(frozen=True)
class CheckpointConfig:
    """Where and how checkpoints are written (the ``checkpoint:`` section).

    Attributes:
        dir: the run directory; steps go to ``dir/step_000500``.
        enabled: False writes no checkpoint (metrics files are still written to ``dir``).
        max_shard_size: safetensors shard size, e.g. ``5GB``.
        save_final: write a checkpoint after the last step.
    """

    dir: Path
    enabled: bool = True
    max_shard_size: str = "5GB"
    save_final: bool = True


def step_dir_name(step: int) -> str:
    """Return ``step_000500`` for step 500."""
    return f"step_{step:06d}"


def config_fingerprint(model_config: Any) -> str:
    """Return a short hash of a model config (its JSON without volatile fields) for train_state.json."""
    data = model_config.to_dict() if hasattr(model_config, "to_dict") else dict(model_config)
    data = {k: v for k, v in data.items() if k not in {"transformers_version", "_name_or_path", "torch_dtype", "dtype"}}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def save_step(
    checkpoint: CheckpointConfig, step: int, epoch: int, model: Any, tokenizer: Any, config: ConfigNode, state: dict
) -> Path:
    """Write ``<dir>/step_N`` (model/ in HF layout, config.yaml, train_state.json) and point ``latest`` at it.

    The step is written under a temporary name and renamed when complete; ``latest`` is
    replaced last, so a run killed at any moment leaves only complete checkpoints behind.
    Returns the step directory.
    """
    root = checkpoint.dir
    final = root / step_dir_name(step)
    partial = root / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial / "model", max_shard_size=checkpoint.max_shard_size, safe_serialization=True)
    if tokenizer is not None:
        tokenizer.save_pretrained(partial / "model")
    (partial / "config.yaml").write_text(config.to_yaml(resolve=True, redact=True), encoding="utf-8")
    train_state = {"step": step, "epoch": epoch, "model_config_fingerprint": config_fingerprint(model.config), **state}
    (partial / "train_state.json").write_text(json.dumps(train_state, indent=2), encoding="utf-8")
    if final.exists():
        shutil.rmtree(final)
    partial.rename(final)
    latest_tmp = root / f".latest.partial-{os.getpid()}"
    latest_tmp.write_text(final.name + "\n", encoding="utf-8")
    latest_tmp.replace(root / "latest")
    return final
