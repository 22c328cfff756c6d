"""``build_trackers``: the ``logging:`` section's experiment trackers, started on rank 0, as one ``Trackers``."""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from pathlib import Path
from typing import Any

from automodel.training.errors import TrainingError
from automodel.training.trackers.common import TrackerSettings, import_library, warn_failed
from automodel.training.trackers.mlflow_tracker import MlflowTracker
from automodel.training.trackers.tensorboard_tracker import TensorBoardTracker
from automodel.training.trackers.trackio_tracker import TrackioTracker
from automodel.training.trackers.wandb_tracker import WandbTracker

TRACKERS: dict[str, type[TrackerSettings]] = {
    "wandb": WandbTracker,
    "mlflow": MlflowTracker,
    "tensorboard": TensorBoardTracker,
    "trackio": TrackioTracker,
}
"""Each tracker's key under ``logging:`` and its settings class (whose fields are the section's keys)."""

MISPLACED_TRACKERS = {name: f"logging.{name}" for name in TRACKERS}
"""Where a tracker section written at the top level of a config (NeMo's ``wandb:``) belongs."""


class Trackers:
    """The started trackers of a run; with none (another rank, or none configured) every call does nothing.

    A tracker that fails while the run goes on (a tracking server down) is reported once as a
    warning and never stops training: training.jsonl and validation.jsonl keep every record.
    """

    def __init__(self, backends: Sequence[Any] = ()) -> None:
        self._backends = list(backends)
        self._warned: set[tuple[str, str]] = set()

    @property
    def names(self) -> list[str]:
        """The ``logging:`` keys of the started trackers, in the config's order."""
        return [backend.section for backend in self._backends]

    def log(self, metrics: Mapping[str, Any], step: int) -> None:
        """Send the numbers among ``metrics`` (``{"train/loss": 2.3, ...}``; None, text and booleans are skipped)
        at ``step``; a NumPy number is sent as a Python float."""
        values = {
            key: value if type(value) in (int, float) else float(value)
            for key, value in metrics.items()
            if isinstance(value, numbers.Real) and not isinstance(value, bool)
        }
        if values:
            self._each("log", lambda backend: backend.log(values, step))

    def finish(self, last_checkpoint: Path | None = None, *, failed: bool = False) -> None:
        """Finish every tracker once, recording ``last_checkpoint`` (the last step folder written, if any);
        ``failed`` marks the runs failed where the tracker has such a state. Later calls do nothing."""
        self._each("finish", lambda backend: backend.finish(last_checkpoint, failed=failed))
        self._backends = []

    def _each(self, action: str, call: Callable[[Any], None]) -> None:
        for backend in self._backends:
            try:
                call(backend)
            except Exception as exc:
                if (backend.section, action) not in self._warned:
                    self._warned.add((backend.section, action))
                    warn_failed(backend.section, action, exc)


def build_trackers(
    settings: Mapping[str, Any],
    *,
    run_dir: str | Path,
    config: Mapping[str, Any],
    enabled: bool = True,
    start_step: int = 0,
) -> Trackers:
    """Check the tracker sections of ``logging:`` and, where ``enabled``, start them.

    Args:
        settings: ``{tracker: its section}`` for the ``logging:`` keys naming trackers (``wandb``, ``mlflow``,
            ``tensorboard``, ``trackio``); a null section takes every default, ``enabled: false`` skips one.
        run_dir: the run's ``checkpoint.dir`` (recorded with each run; TensorBoard's default folder is
            ``run_dir/tensorboard``, wandb's files go under it).
        config: the resolved config with its secrets already redacted: the trackers' run config (MLflow params).
        enabled: False on every rank but rank 0: the sections are still checked, nothing is started.
        start_step: the step the run starts from (the restored step on resume, else 0).

    Returns:
        The started ``Trackers`` (none started when not ``enabled``).

    Raises:
        TrainingError: naming ``logging.<tracker>.<key>`` for an unknown tracker or key or a bad value,
            the extra to install for a tracker whose library is absent, or a tracker that cannot start.
    """
    chosen = [backend for name, section in settings.items() if (backend := _parse(name, section)).enabled]
    if not enabled:
        return Trackers()
    for backend in chosen:
        import_library(backend.library, backend.section)
    for index, backend in enumerate(chosen):
        try:
            backend.start(run_dir=Path(run_dir), config=dict(config), start_step=start_step)
        except BaseException:
            Trackers(chosen[:index]).finish(failed=True)
            raise
    return Trackers(chosen)


def _parse(name: str, section: Any) -> TrackerSettings:
    """Return the settings of tracker ``name`` from its section; a TrainingError naming the key otherwise."""
    if name not in TRACKERS:
        raise TrainingError(
            f"`logging.{name}` is not a tracker{_closest(name, TRACKERS)}; the trackers are {', '.join(TRACKERS)}"
        )
    tracker = TRACKERS[name]
    keys = [field.name for field in fields(tracker)]
    section = {} if section is None else section
    if not isinstance(section, Mapping):
        raise TrainingError(f"`logging.{name}` must be a mapping of its settings ({', '.join(keys)}) or null")
    for key in section:
        if key not in keys:
            raise TrainingError(
                f"`logging.{name}.{key}` is not a {name} setting{_closest(str(key), keys)}; "
                f"the {name} settings are {', '.join(keys)}"
            )
    return tracker(**section)


def _closest(name: str, candidates: Any) -> str:
    """`` (did you mean `x`?)`` for the candidate closest to ``name``, or ``""``."""
    match = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean `{match[0]}`?)" if match else ""
