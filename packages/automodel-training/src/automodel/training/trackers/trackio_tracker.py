"""trackio: the ``logging.trackio`` tracker."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from automodel.training.errors import TrainingError
from automodel.training.trackers.common import TrackerSettings


@dataclass
class TrackioTracker(TrackerSettings):
    """A trackio run per training run.

    Attributes:
        project: the trackio project (default ``automodel``).
        name: the run's name (None: a generated one).
        group: the group the run is shown in.

    trackio writes to its local database under ``$TRACKIO_DIR`` (default
    ``~/.cache/huggingface/trackio``; ``trackio show`` opens the dashboard), or to the Hugging Face
    Space named by ``$TRACKIO_SPACE_ID``. The config, with ``checkpoint_dir`` added, is the run's config.
    """

    section: ClassVar[str] = "trackio"
    library: ClassVar[str] = "trackio"

    project: str = "automodel"
    name: str | None = None
    group: str | None = None

    def start(self, *, run_dir: Path, config: dict[str, Any], start_step: int) -> None:
        """Start the trackio run with ``config`` (plus ``checkpoint_dir``) as its config."""
        import trackio

        try:
            self._run = trackio.init(
                project=self.project,
                name=self.name,
                group=self.group,
                config={**config, "checkpoint_dir": str(run_dir)},
                embed=False,
            )
        except ValueError as exc:
            raise TrainingError(f"`logging.trackio`: trackio could not start a run ({exc})") from None

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step``."""
        self._run.log(metrics, step=step)

    def finish(self, last_checkpoint: Path | None, *, failed: bool) -> None:
        """Finish the run (trackio keeps no summary, so ``last_checkpoint`` is not recorded)."""
        self._run.finish()
