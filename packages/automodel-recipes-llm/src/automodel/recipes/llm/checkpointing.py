"""The recipe side of checkpoints: the `checkpoint:` and `restore_from:` sections."""

from __future__ import annotations

from pathlib import Path

from automodel.checkpoint import CHECKPOINT_KEYS, Checkpointer, CheckpointSettings, restore_step
from automodel.config import ConfigNode, plain_section


def build_checkpoint_config(cfg: ConfigNode) -> CheckpointSettings:
    """Read ``checkpoint:`` into CheckpointSettings; an unknown key is an error suggesting the closest."""
    return CheckpointSettings.from_options(plain_section(cfg, "checkpoint", CHECKPOINT_KEYS))


def restore_from(cfg: ConfigNode, checkpointer: Checkpointer, settings: CheckpointSettings) -> Path | None:
    """Return the step folder to resume from: ``restore_from.path`` (latest, a step folder, or null), else
    this run's ``latest`` when ``checkpoint.auto_resume`` is true and one exists, else None."""
    path = plain_section(cfg, "restore_from", ("path",)).get("path")
    return restore_step(path, checkpointer, settings)
