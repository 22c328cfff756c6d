"""The recipe side of checkpoints: the `checkpoint:` and `restore_from:` sections, and JSONL history on resume."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from automodel.checkpoint import Checkpointer
from automodel.config import ConfigNode, config_error, did_you_mean

METRIC_FILES = ("training.jsonl", "validation.jsonl", "generations.jsonl")
DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1")


@dataclass(frozen=True)
class CheckpointSettings:
    """The ``checkpoint:`` section.

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
        auto_resume: with no ``restore_from``, resume from this run's ``latest`` when there is one.
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

    @property
    def signals(self) -> tuple[str, ...]:
        """The signals to catch: ``()`` when ``save_on_signal`` is false."""
        if self.save_on_signal is True:
            return DEFAULT_SIGNALS
        return tuple(self.save_on_signal or ())


def build_checkpoint_config(cfg: ConfigNode) -> CheckpointSettings:
    """Read ``checkpoint:`` into CheckpointSettings; an unknown key is an error suggesting the closest."""
    section = cfg.get("checkpoint")
    options = section.to_container() if section is not None else {}
    known = [f.name for f in fields(CheckpointSettings)]
    for key in options:
        if key not in known:
            raise config_error(section, "is not a checkpoint setting", key, did_you_mean(str(key), known))
    return CheckpointSettings(**{**options, "dir": Path(options.get("dir", "checkpoints"))})


def build_checkpointer(settings: CheckpointSettings) -> Checkpointer:
    """Return the Checkpointer for the settings (it checks keep_last_n, max_shard_size and save_dtype)."""
    return Checkpointer(
        settings.dir,
        keep_last_n=settings.keep_last_n,
        async_save=settings.async_save,
        max_shard_size=settings.max_shard_size,
        save_dtype=settings.save_dtype,
    )


def restore_step(cfg: ConfigNode, checkpointer: Checkpointer, settings: CheckpointSettings) -> Path | None:
    """Return the step folder to resume from: ``restore_from.path`` (latest, a step folder, or null), else
    this run's ``latest`` when ``checkpoint.auto_resume`` is true and one exists, else None."""
    section = cfg.get("restore_from")
    if section is not None:
        for key in section:
            if key != "path":
                raise config_error(section, "is not a restore_from setting", key, "restore_from takes only `path`")
        path = section.get("path")
        if path is not None:
            return checkpointer.resolve(path)
    return checkpointer.resolve("latest", missing_ok=True) if settings.auto_resume else None


def write_model_metadata(model: Any, tokenizer: Any, out_dir: Path) -> None:
    """Write ``config.json``, ``generation_config.json`` (when the model has one) and the tokenizer into ``out_dir``."""
    model.config.save_pretrained(out_dir)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)


def truncate_history(run_dir: Path, last_step: int) -> None:
    """Drop the metric records of steps after ``last_step`` (steps a resumed run will redo)."""
    for name in METRIC_FILES:
        path = run_dir / name
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= last_step]
        path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
