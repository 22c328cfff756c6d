"""train_ft's experiment trackers (``logging.tensorboard``, ``logging.mlflow``, ...): the curves they hold are
training.jsonl's, their config is redacted, and misplaced or misspelt sections are errors naming the key."""

from __future__ import annotations

import pytest
import torch
from recipe_test_helpers import read_jsonl, run_recipe, sft_config

from automodel.config import ConfigError
from automodel.recipes.llm.kd import KnowledgeDistillationRecipeForNextTokenPrediction
from automodel.recipes.llm.train_ft import TrainFinetuneRecipeForNextTokenPrediction

STEPS = {"global_batch_size": 16, "local_batch_size": 8, "max_steps": 6, "val_check_interval": 3, "log_interval": 2}


def test_train_ft_sends_training_jsonl_to_tensorboard_and_mlflow_with_the_config_redacted(task, tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps its file store behind this switch
    uri = (tmp_path / "mlruns").as_uri()
    out = tmp_path / "run"
    logging = {"progress_bar": False, "tensorboard": None, "mlflow": {"tracking_uri": uri, "experiment_name": "sft"}}
    run_recipe(sft_config(task, out, logging=logging, step_scheduler=STEPS))

    losses = {record["step"]: record["loss"] for record in read_jsonl(out / "training.jsonl")}
    assert list(losses) == [2, 4, 6]
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    float32 = {step: torch.tensor(loss, dtype=torch.float32).item() for step, loss in losses.items()}
    assert {event.step: event.value for event in events.Scalars("train/loss")} == float32
    client = MlflowClient(uri)
    [mlflow_run] = client.search_runs([client.get_experiment_by_name("sft").experiment_id])
    assert {m.step: m.value for m in client.get_metric_history(mlflow_run.info.run_id, "train/loss")} == losses
    val_losses = {record["step"]: record["val_loss"] for record in read_jsonl(out / "validation.jsonl")}
    assert {m.step: m.value for m in client.get_metric_history(mlflow_run.info.run_id, "val/val_loss")} == val_losses
    params = mlflow_run.data.params
    assert params["optimizer.lr"] == "0.003" and params["tokenizer.hf_token"] == "<redacted>"
    assert mlflow_run.data.tags["last_checkpoint"] == str(out / "step_000006")
    written = [path for folder in (tmp_path / "mlruns", out / "tensorboard") for path in folder.rglob("*")]
    assert not any(b"s3cr3t-value" in path.read_bytes() for path in written if path.is_file())


RECIPES = [TrainFinetuneRecipeForNextTokenPrediction, KnowledgeDistillationRecipeForNextTokenPrediction]


@pytest.mark.parametrize("recipe", RECIPES)
def test_a_top_level_wandb_section_says_to_move_it_under_logging(recipe, task, tmp_path):
    cfg = sft_config(task, tmp_path / "run", wandb={"project": "tiny"})
    expected = r"`wandb`: is not a top-level section: experiment trackers are set under `logging:`; move this section"
    with pytest.raises(ConfigError, match=expected + r" to `logging\.wandb`"):
        recipe(cfg).setup()
    assert not (tmp_path / "run").exists()


def test_a_misspelt_tracker_key_names_its_path_before_anything_is_built(task, tmp_path):
    cfg = sft_config(task, tmp_path / "run", logging={"wandb": {"projet": "tiny"}})
    expected = r"`logging\.wandb\.projet`: is not a wandb setting; did you mean `project`\?"
    with pytest.raises(ConfigError, match=expected):
        TrainFinetuneRecipeForNextTokenPrediction(cfg).setup()
    assert not (tmp_path / "run").exists()
