"""A training run's checkpoint settings, the signals that save it, and where it resumes from."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from automodel.checkpoint import layout
from automodel.checkpoint.checkpointer import Checkpointer
from automodel.checkpoint.errors import CheckpointError
from automodel.checkpoint.signals import DEFAULT_SIGNALS, SaveOnSignal


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
        save_on_signal: signals (default SIGTERM, SIGUSR1, SIGINT) that save at the next step
            boundary and end the run with exit status 0 (a second SIGINT interrupts at once);
            false turns this off.
        auto_resume: with no explicit step to restore, resume from this run's ``latest`` when there is one.
        verify: how a step is checked against its ``manifest.json`` before it is restored:
            ``full`` (sizes and checksums), ``size`` (sizes only, for huge checkpoints) or ``off``.
        overwrite: let a run that starts afresh delete the complete steps already in ``dir``
            (and one that resumes, the steps newer than its own); without it such a run is refused.
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
    verify: str = "full"
    overwrite: bool = False

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
    """Return the Checkpointer for the settings, holding the run-folder lock until its ``close()``.

    Raises:
        CheckpointError: a bad keep_last_n, max_shard_size, save_dtype or verify; ``dir`` is a
            file or cannot be written; another process holds ``dir`` (``lock_run_dir``).
    """
    return Checkpointer(
        settings.dir,
        keep_last_n=settings.keep_last_n,
        async_save=settings.async_save,
        max_shard_size=settings.max_shard_size,
        save_dtype=settings.save_dtype,
        verify=settings.verify,
        lock=True,
    )


def restore_step(path: str | None, checkpointer: Checkpointer, settings: CheckpointSettings) -> Path | None:
    """Return the step folder a run resumes from, verified, after making sure the run owns ``settings.dir``.

    The run may not mix its steps with another run's: the complete steps of ``settings.dir``
    that it would not continue from (all of them for a fresh run or one restored from another
    folder; those newer than the step it resumes from otherwise) are refused, or deleted with
    ``settings.overwrite``. Every rank must call this together.

    Args:
        path: what the user asked for: ``latest``, a step folder, or None.
        checkpointer: the run's checkpointer, which resolves ``path``.
        settings: with ``auto_resume``, a None ``path`` means this run's ``latest`` when it exists.

    Returns:
        The step folder, or None to start afresh.

    Raises:
        CheckpointError: the step does not exist or is corrupted, or ``settings.dir`` holds steps
            this run would not continue from and ``overwrite`` is off.
    """
    if path is not None:
        step_dir = checkpointer.resolve(path)
    elif settings.auto_resume:
        step_dir = checkpointer.resolve("latest", missing_ok=True)
    else:
        step_dir = None
    if step_dir is not None:
        checkpointer.verify_step(step_dir)  # before anyone reads its train_state.json
    if settings.overwrite:
        checkpointer.discard_after(step_dir)
        return step_dir
    in_the_way = layout.steps_after(checkpointer.dir, step_dir)
    if in_the_way:
        raise _not_this_runs(checkpointer, step_dir, in_the_way)
    return step_dir


def _not_this_runs(checkpointer: Checkpointer, step_dir: Path | None, steps: list[Path]) -> CheckpointError:
    """The error for a run that would mix its steps with ``steps``, which another run (or branch) saved."""
    names = ", ".join(p.name for p in steps[-5:])
    names = f"{len(steps) - 5} more, {names}" if len(steps) > 5 else names
    latest = checkpointer.latest()
    held = f"{names}; latest: {latest.name if latest is not None else 'none'}"
    elsewhere = "set checkpoint.dir to another folder"
    if step_dir is None:
        return CheckpointError(
            f"{checkpointer.dir} already holds another run's checkpoints ({held}) and this run starts afresh; "
            "to continue that run set checkpoint.auto_resume: true or restore_from.path: latest, to replace it "
            f"set checkpoint.overwrite: true, or {elsewhere}"
        )
    if step_dir.parent.resolve() == checkpointer.dir.resolve():
        return CheckpointError(
            f"{checkpointer.dir} holds steps newer than {step_dir.name}, which this run resumes from ({held}), and "
            f"this run's saves would mix with them; set checkpoint.overwrite: true to delete them, or {elsewhere} "
            f"(restore_from.path can stay {step_dir})"
        )
    return CheckpointError(
        f"{checkpointer.dir} already holds another run's checkpoints ({held}) and this run resumes from {step_dir}; "
        f"set checkpoint.overwrite: true to delete them, or {elsewhere}"
    )


def write_model_metadata(model: Any, processing: Any, out_dir: Path) -> None:
    """Write ``config.json``, ``generation_config.json`` (when the model has one) and the tokenizer or
    processor files (``processing.save_pretrained``) into ``out_dir``."""
    model.config.save_pretrained(out_dir)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out_dir)
    processing.save_pretrained(out_dir)
