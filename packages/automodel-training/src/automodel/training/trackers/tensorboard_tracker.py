"""TensorBoard: the ``logging.tensorboard`` tracker."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from automodel.training.errors import TrainingError
from automodel.training.trackers.common import TrackerSettings


@dataclass
class TensorBoardTracker(TrackerSettings):
    """TensorBoard event files, written by ``torch.utils.tensorboard.SummaryWriter``.

    Attributes:
        log_dir: the folder of the event files (default: ``<checkpoint.dir>/tensorboard``).

    A resumed run hides the events its earlier runs wrote after the restored step (TensorBoard's
    ``purge_step``), as training.jsonl drops their records; a fresh run hides all earlier ones. The
    config and the ``checkpoint_dir`` (and at the end ``last_checkpoint``) are text summaries.
    """

    section: ClassVar[str] = "tensorboard"
    library: ClassVar[str] = "tensorboard"

    log_dir: str | None = None

    def start(self, *, run_dir: Path, config: dict[str, Any], start_step: int) -> None:
        """Open the event writer under ``log_dir`` and write ``config`` and ``run_dir`` as text at ``start_step``."""
        from torch.utils.tensorboard import SummaryWriter

        folder = Path(self.log_dir) if self.log_dir else run_dir / "tensorboard"
        try:
            self._writer = SummaryWriter(log_dir=str(folder), purge_step=start_step + 1 if start_step else 0)
        except OSError as exc:
            raise TrainingError(
                f"`logging.tensorboard.log_dir`: {folder} cannot be written ({exc}); set a writable folder"
            ) from None
        self._step = start_step
        self._writer.add_text("config", f"```\n{json.dumps(config, indent=2, default=str)}\n```", start_step)
        self._writer.add_text("checkpoint_dir", str(run_dir), start_step)

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Write each metric as a scalar at ``step`` and flush, so TensorBoard shows it at once."""
        for key, value in metrics.items():
            self._writer.add_scalar(key, value, step)
        self._writer.flush()
        self._step = step

    def finish(self, last_checkpoint: Path | None, *, failed: bool) -> None:
        """Write ``last_checkpoint`` (when one was written) as text and close the event file."""
        if last_checkpoint is not None:
            self._writer.add_text("last_checkpoint", str(last_checkpoint), self._step)
        self._writer.close()
