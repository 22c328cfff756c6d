"""A run's checkpoint settings, where it resumes from, and the metric history a resume rewinds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from automodel.checkpoint import (
    CHECKPOINT_KEYS,
    CheckpointError,
    CheckpointSettings,
    build_checkpointer,
    restore_step,
    truncate_history,
)


def test_settings_from_options_default_the_directory_and_list_the_signals(tmp_path: Path) -> None:
    settings = CheckpointSettings.from_options({"keep_last_n": 2})
    assert (settings.dir, settings.keep_last_n, settings.signals) == (Path("checkpoints"), 2, ("SIGTERM", "SIGUSR1"))
    assert CheckpointSettings.from_options({"dir": str(tmp_path), "save_on_signal": False}).signals == ()
    assert set(CHECKPOINT_KEYS) >= {"dir", "auto_resume", "save_on_signal"}


def test_restore_step_follows_the_path_then_auto_resume(tmp_path: Path) -> None:
    settings = CheckpointSettings.from_options({"dir": str(tmp_path), "auto_resume": True})
    checkpointer = build_checkpointer(settings)
    assert restore_step(None, checkpointer, settings) is None  # nothing saved yet: start afresh
    model = torch.nn.Linear(2, 2)
    saved = checkpointer.save(3, model=model, optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert restore_step(None, checkpointer, settings) == saved
    assert restore_step(None, checkpointer, CheckpointSettings.from_options({"dir": str(tmp_path)})) is None
    with pytest.raises(CheckpointError):
        restore_step(str(tmp_path / "step_000009"), checkpointer, settings)


def test_truncate_history_keeps_the_steps_up_to_the_resumed_one(tmp_path: Path) -> None:
    (tmp_path / "training.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)))
    truncate_history(tmp_path, 2)
    assert [json.loads(line)["step"] for line in (tmp_path / "training.jsonl").read_text().splitlines()] == [1, 2]
    truncate_history(tmp_path, -1)
    assert (tmp_path / "training.jsonl").read_text() == ""
