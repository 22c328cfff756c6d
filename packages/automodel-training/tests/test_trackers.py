"""Experiment trackers, each for real and offline: what each one reads back is what training.jsonl holds.

The libraries are the extras ``automodel-training[wandb|mlflow|tensorboard|trackio]``; a test whose
library is not installed is skipped.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from test_finetune_loop import TinyRecipe

from automodel.training import TRACKERS, TrainingError, build_trackers

CONFIG = {"optimizer": {"_target_": "torch.optim.AdamW", "lr": 0.01}, "tokenizer": {"hf_token": "<redacted>"}}


class TrackedRecipe(TinyRecipe):
    """The 12-step tiny recipe of test_finetune_loop, with the trackers of ``settings``."""

    def __init__(self, run_dir: Path, settings: dict, signal_at: int | None = None):
        super().__init__(run_dir, signal_at)
        self.settings = settings

    def setup(self):
        super().setup()
        self.trackers = build_trackers(self.settings, run_dir=self.run_dir, config=CONFIG)


class FailingRecipe(TrackedRecipe):
    """Raises in its fourth step."""

    def _train_step(self, micro_batches):
        if self.step_scheduler.step == 4:
            raise RuntimeError("out of memory")
        return super()._train_step(micro_batches)


def train(run_dir: Path, settings: dict, signal_at: int | None = None) -> tuple[dict, dict]:
    """Run the tracked recipe; return training.jsonl's loss and validation.jsonl's val_loss by step."""
    recipe = TrackedRecipe(run_dir, settings, signal_at)
    recipe.setup()
    recipe.run_train_validation_loop()
    return _by_step(run_dir / "training.jsonl", "loss"), _by_step(run_dir / "validation.jsonl", "val_loss")


def _by_step(path: Path, key: str) -> dict[int, float]:
    return {record["step"]: record[key] for record in map(json.loads, path.read_text().splitlines())}


def _wandb(run_file: Path, *options: str) -> str:
    """The output of wandb's own reader of a run's transaction log (``wandb leet inspect``)."""
    command = [sys.executable, "-m", "wandb", "leet", "inspect", "--json", *options, str(run_file)]
    return subprocess.run(command, check=True, capture_output=True, text=True, timeout=120).stdout


def test_the_wandb_offline_run_holds_training_jsonls_loss_curve_config_and_last_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    losses, val_losses = train(tmp_path, {"wandb": {"project": "tiny", "name": "run-1", "tags": ["test"]}})
    [run_file] = (tmp_path / "wandb").glob("offline-run-*/run-*.wandb")
    records = [json.loads(line) for line in _wandb(run_file).splitlines()]
    rows = {row["_step"]: row for row in (r["history"]["item"] for r in records if r["type"] == "history")}
    assert {step: row["train/loss"] for step, row in rows.items() if "train/loss" in row} == losses
    assert {step: row["val/val_loss"] for step, row in rows.items() if "val/val_loss" in row} == val_losses
    run = json.loads(_wandb(run_file, "--summary"))
    assert (run["state"], run["project"], run["name"], run["tags"]) == ("finished", "tiny", "run-1", ["test"])
    assert run["config"]["optimizer"]["lr"] == 0.01 and run["config"]["tokenizer"]["hf_token"] == "<redacted>"
    assert run["summary"]["checkpoint_dir"] == str(tmp_path)
    assert run["summary"]["last_checkpoint"] == str(tmp_path / "step_000012")


def test_the_mlflow_run_holds_training_jsonls_loss_curve_and_the_config_as_params(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
    uri = (tmp_path / "mlruns").as_uri()
    settings = {"mlflow": {"tracking_uri": uri, "experiment_name": "tiny", "run_name": "run-1"}}
    losses, val_losses = train(tmp_path / "run", settings)
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert {metric.step: metric.value for metric in history} == losses
    history = client.get_metric_history(run.info.run_id, "val/val_loss")
    assert {metric.step: metric.value for metric in history} == val_losses
    assert (run.info.run_name, run.info.status) == ("run-1", "FINISHED")
    assert run.data.params["optimizer.lr"] == "0.01" and run.data.params["tokenizer.hf_token"] == "<redacted>"
    assert run.data.tags["last_checkpoint"] == str(tmp_path / "run" / "step_000012")


def test_a_run_that_raises_ends_its_mlflow_run_as_failed(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    uri = (tmp_path / "mlruns").as_uri()
    recipe = FailingRecipe(tmp_path / "run", {"mlflow": {"tracking_uri": uri, "experiment_name": "tiny"}})
    recipe.setup()
    with pytest.raises(RuntimeError, match="out of memory"):
        recipe.run_train_validation_loop()
    client = MlflowClient(uri)
    [run] = client.search_runs([client.get_experiment_by_name("tiny").experiment_id])
    assert run.info.status == "FAILED"
    assert [metric.step for metric in client.get_metric_history(run.info.run_id, "train/loss")] == [1, 2, 3]


def test_a_tracker_failing_mid_run_is_one_warning_and_the_run_goes_on(tmp_path, monkeypatch, caplog):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    store = tmp_path / "mlruns"
    trackers = build_trackers({"mlflow": {"tracking_uri": store.as_uri()}}, run_dir=tmp_path, config=CONFIG)
    trackers.log({"train/loss": 2.0}, step=1)
    shutil.rmtree(store)  # the tracking store is gone
    with caplog.at_level(logging.WARNING, logger="automodel.training.trackers"):
        for step in (2, 3, 4):
            trackers.log({"train/loss": 1.0}, step=step)
        trackers.finish()
    assert [record.getMessage().split(" (")[0] for record in caplog.records] == [
        "the mlflow tracker failed to log",
        "the mlflow tracker failed to finish",
    ]
    assert "training goes on" in caplog.records[0].getMessage()


def _tensorboard(log_dir: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return events


def _float32(values: dict[int, float]) -> dict[int, float]:
    """The values as TensorBoard stores scalars (float32)."""
    return {step: torch.tensor(value, dtype=torch.float32).item() for step, value in values.items()}


def test_the_tensorboard_events_hold_training_jsonls_loss_curve(tmp_path):
    pytest.importorskip("tensorboard")
    losses, val_losses = train(tmp_path, {"tensorboard": None})
    events = _tensorboard(tmp_path / "tensorboard")
    assert {event.step: event.value for event in events.Scalars("train/loss")} == _float32(losses)
    assert {event.step: event.value for event in events.Scalars("val/val_loss")} == _float32(val_losses)
    assert {"train/grad_norm", "train/lr", "train/tps", "train/mfu", "val/val_ppl"} <= set(events.Tags()["scalars"])


def test_a_run_stopped_by_a_signal_finishes_its_tracker_with_the_step_it_saved(tmp_path):
    pytest.importorskip("tensorboard")
    log_dir = tmp_path / "events"
    losses, _ = train(tmp_path, {"tensorboard": {"log_dir": str(log_dir)}}, signal_at=6)
    events = _tensorboard(log_dir)
    assert {event.step: event.value for event in events.Scalars("train/loss")} == _float32(losses)
    assert list(losses) == [1, 2, 3, 4, 5, 6]
    [text] = events.Tensors("last_checkpoint/text_summary")
    assert text.tensor_proto.string_val == [str(tmp_path / "step_000006").encode()]


def test_a_resumed_runs_tensorboard_events_replace_those_after_the_restored_step(tmp_path):
    pytest.importorskip("tensorboard")
    first = build_trackers({"tensorboard": {}}, run_dir=tmp_path, config=CONFIG)
    for step in range(1, 7):
        first.log({"train/loss": float(step)}, step)
    first.finish()
    time.sleep(1.1)  # TensorBoard reads event files in the order of their names, which start with the second
    resumed = build_trackers({"tensorboard": {}}, run_dir=tmp_path, config=CONFIG, start_step=3)
    for step in (4, 5):
        resumed.log({"train/loss": 10.0 + step}, step)
    resumed.finish()
    events = _tensorboard(tmp_path / "tensorboard")
    assert {event.step: event.value for event in events.Scalars("train/loss")} == {1: 1, 2: 2, 3: 3, 4: 14, 5: 15}


def test_the_trackio_run_holds_training_jsonls_loss_curve(tmp_path, trackio_dir):
    pytest.importorskip("trackio")
    from trackio import SQLiteStorage

    losses, val_losses = train(tmp_path, {"trackio": {"project": "automodel-tests", "name": tmp_path.name}})
    logs = SQLiteStorage.get_logs("automodel-tests", tmp_path.name)
    assert {log["step"]: log["train/loss"] for log in logs if "train/loss" in log} == losses
    assert {log["step"]: log["val/val_loss"] for log in logs if "val/val_loss" in log} == val_losses
    assert SQLiteStorage.get_project_db_path("automodel-tests").parent == trackio_dir


@pytest.mark.parametrize("tracker", list(TRACKERS))
def test_a_tracker_whose_library_is_not_installed_names_the_extra_to_install(tracker, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, TRACKERS[tracker].library, None)  # how Python marks a module as absent
    with pytest.raises(TrainingError) as error:
        build_trackers({tracker: {}}, run_dir=tmp_path, config=CONFIG)
    assert error.value.user_error
    assert f"`logging.{tracker}`" in str(error.value)
    assert f"pip install 'automodel-training[{tracker}]'" in str(error.value)


def test_no_tracker_starts_when_one_of_them_is_not_installed(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(TrainingError, match=r"automodel-training\[wandb\]"):
        build_trackers({"tensorboard": {}, "wandb": {}}, run_dir=tmp_path, config=CONFIG)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"wandb": {"projet": "x"}}, r"`logging\.wandb\.projet` is not a wandb setting \(did you mean `project`\?\)"),
        ({"mlflow": {"api_key": "x"}}, r"`logging\.mlflow\.api_key` is not a mlflow setting"),
        ({"neptune": {"project": "x"}}, r"`logging\.neptune` is not a tracker; the trackers are wandb, mlflow"),
        ({"tensorboard": "runs/"}, r"`logging\.tensorboard` must be a mapping of its settings \(enabled, log_dir\)"),
        ({"wandb": {"mode": "cloud"}}, r"`logging\.wandb\.mode` is 'cloud'; it must be one of online, offline"),
    ],
)
def test_an_unknown_tracker_key_or_value_is_an_error_naming_it_on_every_rank(settings, message, tmp_path):
    for rank0 in (True, False):
        with pytest.raises(TrainingError, match=message):
            build_trackers(settings, run_dir=tmp_path, config=CONFIG, enabled=rank0)
    assert list(tmp_path.iterdir()) == []


def test_other_ranks_and_disabled_sections_start_nothing(tmp_path):
    assert build_trackers({"tensorboard": {}}, run_dir=tmp_path, config=CONFIG, enabled=False).names == []
    assert build_trackers({"tensorboard": {"enabled": False}}, run_dir=tmp_path, config=CONFIG).names == []
    assert list(tmp_path.iterdir()) == []
