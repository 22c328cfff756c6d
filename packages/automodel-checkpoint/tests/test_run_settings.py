"""A run's checkpoint settings, the signals that save it, and where it resumes from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from automodel.checkpoint import (
    CHECKPOINT_KEYS,
    CheckpointError,
    CheckpointSettings,
    build_checkpointer,
    restore_step,
)


def test_settings_from_options_default_the_directory_and_list_the_signals(tmp_path: Path) -> None:
    settings = CheckpointSettings.from_options({"keep_last_n": 2})
    assert (settings.dir, settings.keep_last_n, settings.signals) == (Path("checkpoints"), 2, ("SIGTERM", "SIGUSR1"))
    assert CheckpointSettings.from_options({"dir": str(tmp_path), "save_on_signal": False}).signals == ()
    with settings.signal_guard() as guard:
        assert guard.requested is False
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


class WithUnusedWeight(torch.nn.Module):
    """A model with a trainable parameter no loss reaches (as CLIP's post-layernorm in a Llava)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.used, self.unused = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def _steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, count: int) -> list[float]:
    losses = []
    for i in range(count):
        loss = model(torch.full((2, 4), float(i + 1))).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    return losses


def test_a_parameter_the_saved_run_never_stepped_resumes_without_optimizer_state(tmp_path: Path) -> None:
    model = WithUnusedWeight()
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    _steps(model, optimizer, 2)
    checkpointer = build_checkpointer(CheckpointSettings.from_options({"dir": str(tmp_path)}))
    step_dir = checkpointer.save(2, model=model, optimizer=optimizer)
    expected = _steps(model, optimizer, 2)
    fresh = WithUnusedWeight()
    fresh_optimizer = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    checkpointer.load(step_dir, model=fresh, optimizer=fresh_optimizer)
    assert _steps(fresh, fresh_optimizer, 2) == expected
    assert fresh.unused.weight not in fresh_optimizer.state
