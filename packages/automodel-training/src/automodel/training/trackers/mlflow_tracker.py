"""MLflow: the ``logging.mlflow`` tracker."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from automodel.training.errors import TrainingError
from automodel.training.trackers.common import TrackerSettings

MAX_PARAM_VALUE = 6000  # MLflow's limit on a param value (mlflow.utils.validation.MAX_PARAM_VAL_LENGTH)
PARAMS_PER_BATCH = 100  # MLflow's limit on params in one log_batch call


@dataclass
class MlflowTracker(TrackerSettings):
    """An MLflow run per training run, through ``MlflowClient`` (no global active run).

    Attributes:
        tracking_uri: where runs are recorded (``http://host:5000``, ``sqlite:///mlflow.db``, ``file:///path``);
            None leaves it to ``MLFLOW_TRACKING_URI`` (else MLflow's default).
        experiment_name: the experiment, created when missing (default ``Default``).
        run_name: the run's name (None: a generated one).
        tags: run tags, ``{name: value}``.

    The config's keys become params (``optimizer.lr``); the run gets the tags ``checkpoint_dir`` and, at
    the end, ``last_checkpoint``. Credentials are read by MLflow itself (``MLFLOW_TRACKING_USERNAME`` and
    ``MLFLOW_TRACKING_PASSWORD``, or ``MLFLOW_TRACKING_TOKEN``).
    """

    section: ClassVar[str] = "mlflow"
    library: ClassVar[str] = "mlflow"

    tracking_uri: str | None = None
    experiment_name: str | None = None
    run_name: str | None = None
    tags: dict[str, str] | None = None

    def start(self, *, run_dir: Path, config: dict[str, Any], start_step: int) -> None:
        """Create the run, with ``config`` flattened into params and ``run_dir`` as its ``checkpoint_dir`` tag."""
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        name = self.experiment_name or "Default"
        tags = {key: str(value) for key, value in (self.tags or {}).items()}
        try:
            self._client = MlflowClient(tracking_uri=self.tracking_uri)
            experiment = self._client.get_experiment_by_name(name)
            experiment_id = experiment.experiment_id if experiment else self._client.create_experiment(name)
            run = self._client.create_run(
                experiment_id, run_name=self.run_name, tags={**tags, "checkpoint_dir": str(run_dir)}
            )
            self._run_id = run.info.run_id
            params = [Param(metric_name(key), value) for key, value in flatten_params(config).items()]
            for first in range(0, len(params), PARAMS_PER_BATCH):
                self._client.log_batch(self._run_id, params=params[first : first + PARAMS_PER_BATCH])
        except MlflowException as exc:
            raise TrainingError(
                f"`logging.mlflow`: MLflow could not start a run ({exc.message}); check the section's tracking_uri "
                "and experiment_name"
            ) from None

    def log(self, metrics: dict[str, float], step: int) -> None:
        """Log ``metrics`` at ``step`` in one batch."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(metric_name(key), float(value), now, step) for key, value in metrics.items()]
        self._client.log_batch(self._run_id, metrics=batch)

    def finish(self, last_checkpoint: Path | None, *, failed: bool) -> None:
        """Tag ``last_checkpoint`` (when one was written) and end the run as FINISHED (FAILED if ``failed``)."""
        if last_checkpoint is not None:
            self._client.set_tag(self._run_id, "last_checkpoint", str(last_checkpoint))
        self._client.set_terminated(self._run_id, "FAILED" if failed else "FINISHED")


def metric_name(key: str) -> str:
    """Return ``key`` with the characters MLflow refuses in metric and param names replaced by ``_``
    (``ndcg@10`` -> ``ndcg_10``)."""
    return re.sub(r"[^\w/.\- :]", "_", key)


def flatten_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Return ``config`` as MLflow params: nested keys joined by dots (``optimizer.lr``), values as text
    (lists and numbers as JSON) cut to MLflow's length limit."""
    params: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            params.update(flatten_params(value, f"{name}."))
            continue
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        params[name] = text[:MAX_PARAM_VALUE]
    return params
