"""A training run's checkpoint settings, the signals that save it, and where it resumes from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from automodel.checkpoint.checkpointer import Checkpointer
from automodel.checkpoint.signals import SaveOnSignal

DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1")


@dataclass(frozen=True)
class CheckpointSettings:
    """A recipe's ``checkpoint:`` section.

    Attributes:
        dir: the run directory; steps go to ``dir/step_000500``, metrics to ``dir/*.jsonl``.
        enabled: False writes no checkpoint.
        keep_last_n: keep only the newest N complete steps (never the one ``latest`` names).
        async_save: stage state to CPU and write in the background while training goes on.
        max_shard_size: safetensors shard size of ``model/`` (``5GB``, ``500MB``).
        save_dtype: cast the weights of ``model/`` (``bf16``); resume state keeps the training dtype.
        save_final: write a checkpoint after the last step.
        save_on_signal: signals (default SIGTERM, SIGUSR1) that save at the next step boundary
            and end the run with exit status 0; false turns this off.
        auto_resume: with no explicit step to restore, resume from this run's ``latest`` when there is one.
    """

    dir: Path
    enabled: bool = True
    keep_last_n: int | None = None
    async_save: bool = False
    max_shard_size: str = "5GB"
    save_dtype: str | None = None
    save_final: bool = True
    save_on_signal: Any = True
    auto_resume: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any], default_dir: str = "checkpoints") -> CheckpointSettings:
        """Build the settings from a mapping of the field names (``dir`` defaults to ``default_dir``)."""
        return cls(**{**options, "dir": Path(options.get("dir", default_dir))})

    @property
    def signals(self) -> tuple[str, ...]:
        """The signals to catch: ``()`` when ``save_on_signal`` is false."""
        if self.save_on_signal is True:
            return DEFAULT_SIGNALS
        return tuple(self.save_on_signal or ())

    def signal_guard(self) -> SaveOnSignal:
        """A ``SaveOnSignal`` for ``signals``, to enter around the training loop."""
        return SaveOnSignal(self.signals)


CHECKPOINT_KEYS = tuple(f.name for f in fields(CheckpointSettings))


def build_checkpointer(settings: CheckpointSettings) -> Checkpointer:
    """Return the Checkpointer for the settings (it checks keep_last_n, max_shard_size and save_dtype)."""
    return Checkpointer(
        settings.dir,
        keep_last_n=settings.keep_last_n,
        async_save=settings.async_save,
        max_shard_size=settings.max_shard_size,
        save_dtype=settings.save_dtype,
    )


def restore_step(path: str | None, checkpointer: Checkpointer, settings: CheckpointSettings) -> Path | None:
    """Return the step folder a run resumes from.

    Args:
        path: what the user asked for: ``latest``, a step folder, or None.
        checkpointer: the run's checkpointer, which resolves ``path``.
        settings: with ``auto_resume``, a None ``path`` means this run's ``latest`` when it exists.

    Returns:
        The step folder, or None to start afresh.
    """
    if path is not None:
        return checkpointer.resolve(path)
    return checkpointer.resolve("latest", missing_ok=True) if settings.auto_resume else None


def write_model_metadata(model: Any, processing: Any, out_dir: Path) -> None:
    """Write ``config.json``, ``generation_config.json`` (when the model has one) and the tokenizer or
    processor files (``processing.save_pretrained``) into ``out_dir``."""
    model.config.save_pretrained(out_dir)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out_dir)
    processing.save_pretrained(out_dir)
