"""Exact resume, auto-resume, save-on-signal and restore errors of train_ft."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from recipe_test_helpers import read_jsonl, run_recipe, sft_config
from safetensors.torch import load_file

from automodel.checkpoint import CheckpointError
from automodel.config import ConfigError, dump_yaml
from automodel.recipes.llm.train_ft import TrainFinetuneRecipeForNextTokenPrediction


def _schedule(max_steps: int, checkpoint_interval: int) -> dict:
    return {"global_batch_size": 16, "local_batch_size": 8, "max_steps": max_steps,
            "checkpoint_interval": checkpoint_interval, "log_interval": 1}  # fmt: skip


def _losses(run_dir) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in read_jsonl(run_dir / "training.jsonl")}


@pytest.mark.parametrize("packed", [False, True], ids=["padded", "packed"])
def test_a_resumed_run_repeats_the_uninterrupted_losses_and_weights_bit_for_bit(task, tmp_path, packed):
    extra = {"packed_sequence": {"enabled": True, "packed_sequence_size": 96}} if packed else {}
    cosine = {"_target_": "automodel.training.warmup_cosine", "warmup_steps": 2, "min_lr_ratio": 0.1}
    common = {"step_scheduler": _schedule(12, 5), "validation_dataset": None, "lr_scheduler": cosine, **extra}
    full = run_recipe(sft_config(task, tmp_path / "full", **common))
    restore = {"path": str(tmp_path / "full" / "step_000005")}
    resumed = run_recipe(sft_config(task, tmp_path / "resumed", restore_from=restore, **common))
    uninterrupted, after = _losses(tmp_path / "full"), _losses(tmp_path / "resumed")
    assert sorted(after) == list(range(6, 13))
    assert all(after[step] == uninterrupted[step] for step in after)
    for name, tensor in full.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


def test_auto_resume_continues_the_same_run_and_keeps_one_record_per_step(task, tmp_path):
    first = sft_config(task, tmp_path, step_scheduler=_schedule(4, 2), validation_dataset=None)
    run_recipe(first)
    again = sft_config(task, tmp_path, step_scheduler=_schedule(6, 2), validation_dataset=None,
                       checkpoint={"dir": str(tmp_path), "auto_resume": True})  # fmt: skip
    recipe = TrainFinetuneRecipeForNextTokenPrediction(again)
    recipe.setup()
    assert recipe.step_scheduler.step == 4
    recipe.run_train_validation_loop()
    assert [r["step"] for r in read_jsonl(tmp_path / "training.jsonl")] == [1, 2, 3, 4, 5, 6]
    assert (tmp_path / "latest").read_text().strip().endswith("step_000006")


def test_keep_last_n_keeps_the_newest_steps(task, tmp_path):
    cfg = sft_config(task, tmp_path, step_scheduler=_schedule(6, 1), validation_dataset=None,
                     checkpoint={"dir": str(tmp_path), "keep_last_n": 2})  # fmt: skip
    run_recipe(cfg)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_000005", "step_000006"]


def test_async_save_writes_the_same_weights_as_a_synchronous_save(task, tmp_path):
    for name, async_save in (("sync", False), ("async", True)):
        run_recipe(sft_config(task, tmp_path / name, step_scheduler=_schedule(3, 3), validation_dataset=None,
                        checkpoint={"dir": str(tmp_path / name), "async_save": async_save}))  # fmt: skip
    sync = load_file(tmp_path / "sync" / "step_000003" / "model" / "model.safetensors")
    written = load_file(tmp_path / "async" / "step_000003" / "model" / "model.safetensors")
    assert sync.keys() == written.keys() and all(torch.equal(sync[k], written[k]) for k in sync)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT (Ctrl-C)"])
def test_a_stop_signal_saves_at_the_next_step_and_exits_zero(task, tmp_path, sig):
    cfg = sft_config(task, tmp_path, step_scheduler=_schedule(100000, 0), validation_dataset=None)
    path = tmp_path / "cfg.yaml"
    path.write_text(dump_yaml(cfg.to_container()))
    proc = subprocess.Popen([sys.executable, "-m", "automodel.recipes.llm.train_ft", "-c", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while not (tmp_path / "training.jsonl").exists() or len(read_jsonl(tmp_path / "training.jsonl")) < 3:
        assert proc.poll() is None and time.time() < deadline, proc.stderr.read() if proc.poll() else "timeout"
        time.sleep(0.2)
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert f"{sig.name} received" in err
    latest = (tmp_path / "latest").read_text().strip()
    assert (tmp_path / latest / "train_state.json").is_file()
    assert int(latest.split("_")[1]) >= 3


def test_restoring_a_missing_checkpoint_lists_what_exists(task, tmp_path):
    run_recipe(sft_config(task, tmp_path, step_scheduler=_schedule(2, 1), validation_dataset=None))
    cfg = sft_config(task, tmp_path, restore_from={"path": str(tmp_path / "step_000009")})
    with pytest.raises(CheckpointError, match=r"does not exist; complete checkpoints in .*step_000001, step_000002"):
        TrainFinetuneRecipeForNextTokenPrediction(cfg).setup()


def test_restoring_into_a_different_model_names_both_configs(task, tmp_path):
    run_recipe(sft_config(task, tmp_path, step_scheduler=_schedule(1, 1), validation_dataset=None))
    cfg = sft_config(task, tmp_path / "other", restore_from={"path": str(tmp_path / "step_000001")})
    cfg.model.config.hidden_size = 32
    with pytest.raises(CheckpointError, match=r"different model: its config is .*step_000001/model/config.json.*"
                       r"the current model's is the `model:` section"):  # fmt: skip
        TrainFinetuneRecipeForNextTokenPrediction(cfg).setup()


@pytest.mark.parametrize(("section", "value", "message"), [
    ("checkpoint", {"dir": "x", "keep_lats_n": 2}, r"`checkpoint.keep_lats_n`: is not a checkpoint setting"),
    ("restore_from", {"pth": "latest"}, r"`restore_from.pth`: is not a restore_from setting"),
])  # fmt: skip
def test_bad_checkpoint_settings_name_the_key(task, tmp_path, section, value, message):
    with pytest.raises(ConfigError, match=message):
        TrainFinetuneRecipeForNextTokenPrediction(sft_config(task, tmp_path, **{section: value})).setup()
