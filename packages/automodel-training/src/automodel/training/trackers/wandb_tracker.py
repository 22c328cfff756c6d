"""Weights & Biases: the ``logging.wandb`` tracker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from automodel.training.errors import TrainingError
from automodel.training.trackers.common import TrackerSettings

MODES = ("online", "offline", "disabled")


@dataclass
class WandbTracker(TrackerSettings):
    """A W&B run per training run.

    Attributes:
        project, entity, name, group, tags, notes: as ``wandb.init`` takes them; None leaves them to
            wandb (``WANDB_PROJECT``, ``WANDB_ENTITY``, a generated run name, ...).
        mode: ``online``, ``offline`` (written under ``dir``, uploaded later by ``wandb sync``) or
            ``disabled``; None leaves it to ``WANDB_MODE`` (else online).
        dir: the folder wandb writes its files under (default: the run's ``checkpoint.dir``).

    The API key is read by wandb itself (``WANDB_API_KEY`` or ``wandb login``). wandb's system
    metadata is not collected: it holds the command line, where an override may carry a secret.
    """

    section: ClassVar[str] = "wandb"
    library: ClassVar[str] = "wandb"
    choices: ClassVar[dict[str, tuple[str, ...]]] = {"mode": MODES}

    project: str | None = None
    entity: str | None = None
    name: str | None = None
    group: str | None = None
    tags: list[str] | None = None
    notes: str | None = None
    mode: str | None = None
    dir: str | None = None

    def __post_init__(self) -> None:
        if self.mode is not None and self.mode not in MODES:
            raise TrainingError(
                f"`logging.wandb.mode` is {self.mode!r}; it must be one of {', '.join(MODES)}, or null for WANDB_MODE"
            )

    def start(self, *, run_dir: Path, config: dict[str, Any], start_step: int) -> None:
        """Start the W&B run with ``config`` as its config and ``run_dir`` as its ``checkpoint_dir`` summary."""
        import wandb

        folder = Path(self.dir) if self.dir else run_dir
        folder.mkdir(parents=True, exist_ok=True)
        try:
            self._run = wandb.init(
                project=self.project,
                entity=self.entity,
                name=self.name,
                group=self.group,
                tags=self.tags,
                notes=self.notes,
                mode=self.mode,
                dir=str(folder),
                config=config,
                settings=wandb.Settings(x_disable_meta=True),
            )
        except wandb.errors.Error as exc:
            raise TrainingError(
                f"`logging.wandb`: wandb could not start a run ({exc}); check the section's settings, and for an "
                "online run WANDB_API_KEY or `wandb login`"
            ) from None
        self._run.summary["checkpoint_dir"] = str(run_dir)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step``."""
        self._run.log(metrics, step=step)

    def finish(self, last_checkpoint: Path | None, *, failed: bool) -> None:
        """Record ``last_checkpoint`` (when one was written) in the summary and finish the run
        (exit code 1 if ``failed``)."""
        if last_checkpoint is not None:
            self._run.summary["last_checkpoint"] = str(last_checkpoint)
        self._run.finish(exit_code=1 if failed else 0)
