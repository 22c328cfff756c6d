"""A run's checkpoint settings, the signals that save it, and where it resumes from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from automodel.checkpoint import (
    CHECKPOINT_KEYS,
    Checkpointer,
    CheckpointError,
    CheckpointSettings,
    build_checkpointer,
    restore_step,
)


def test_settings_from_options_default_the_directory_and_list_the_signals(tmp_path: Path) -> None:
    settings = CheckpointSettings.from_options({"keep_last_n": 2})
    signals = ("SIGTERM", "SIGUSR1", "SIGINT")
    assert (settings.dir, settings.keep_last_n, settings.signals) == (Path("checkpoints"), 2, signals)
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
    with pytest.raises(CheckpointError, match="already holds another run's checkpoints"):
        restore_step(None, checkpointer, CheckpointSettings.from_options({"dir": str(tmp_path)}))
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


def _run_dir_with_steps(root: Path, steps: tuple[int, ...]) -> None:
    """A folder where an earlier run saved ``steps`` (latest: the last)."""
    model = torch.nn.Linear(2, 2)
    checkpointer = Checkpointer(root)
    for step in steps:
        checkpointer.save(step, model=model)


def _settings(root: Path, **options: object) -> CheckpointSettings:
    return CheckpointSettings.from_options({"dir": str(root), **options})


def test_a_fresh_run_in_a_folder_holding_another_runs_steps_is_refused_or_replaces_them(tmp_path: Path) -> None:
    _run_dir_with_steps(tmp_path, (2, 4))
    settings = _settings(tmp_path)
    with pytest.raises(CheckpointError) as error:
        restore_step(None, build_checkpointer(settings), settings)
    assert str(error.value).startswith(
        f"{tmp_path} already holds another run's checkpoints (step_000002, step_000004; latest: step_000004)"
    )
    assert all(
        hint in str(error.value)
        for hint in ("checkpoint.auto_resume: true", "restore_from.path: latest", "checkpoint.overwrite: true")
    )
    resume = _settings(tmp_path, auto_resume=True)
    assert restore_step(None, build_checkpointer(resume), resume) == tmp_path / "step_000004"

    settings = _settings(tmp_path, overwrite=True)
    checkpointer = build_checkpointer(settings)
    assert restore_step(None, checkpointer, settings) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock"]  # no step, no latest, nothing half deleted
    checkpointer.save(1, model=torch.nn.Linear(2, 2))
    assert checkpointer.latest() == tmp_path / "step_000001"


def test_resuming_an_older_step_of_the_folder_refuses_the_newer_ones_or_deletes_them(tmp_path: Path) -> None:
    _run_dir_with_steps(tmp_path, (2, 4, 6))
    settings = _settings(tmp_path)
    with pytest.raises(CheckpointError, match="holds steps newer than step_000002, which this run resumes from"):
        restore_step("step_000002", build_checkpointer(settings), settings)
    settings = _settings(tmp_path, overwrite=True)
    checkpointer = build_checkpointer(settings)
    assert restore_step("step_000002", checkpointer, settings) == tmp_path / "step_000002"
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_000002"]
    assert checkpointer.latest() == tmp_path / "step_000002"


def test_resuming_another_folders_step_into_a_folder_holding_steps_is_refused_or_replaces_them(tmp_path) -> None:
    _run_dir_with_steps(tmp_path / "first", (3,))
    _run_dir_with_steps(tmp_path / "second", (1,))
    source = str(tmp_path / "first" / "step_000003")
    settings = _settings(tmp_path / "second")
    with pytest.raises(CheckpointError, match=r"already holds another run's checkpoints .* resumes from .*first"):
        restore_step(source, build_checkpointer(settings), settings)
    settings = _settings(tmp_path / "second", overwrite=True)
    assert restore_step(source, build_checkpointer(settings), settings) == Path(source)
    assert sorted(p.name for p in (tmp_path / "second").iterdir()) == [".lock"]


def test_latest_never_moves_back_to_an_older_step_while_the_newer_one_exists(tmp_path: Path) -> None:
    _run_dir_with_steps(tmp_path, (5,))
    checkpointer = Checkpointer(tmp_path)  # a second run saving into the same folder, from step 1
    with pytest.raises(CheckpointError, match=r"latest names step_000005, newer than step_000003 being saved"):
        checkpointer.save(3, model=torch.nn.Linear(2, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000005"]  # nothing written
    checkpointer.save(5, model=torch.nn.Linear(2, 2))  # the same step again replaces it whole
    checkpointer.save(6, model=torch.nn.Linear(2, 2))
    (tmp_path / "step_000006").rename(tmp_path / "gone")
    checkpointer.save(4, model=torch.nn.Linear(2, 2))  # latest names a step that no longer exists: fine
    assert checkpointer.latest() == tmp_path / "step_000004"


def test_restore_step_verifies_the_step_and_passes_the_verify_setting_on(tmp_path: Path) -> None:
    _run_dir_with_steps(tmp_path, (1, 2))
    (tmp_path / "step_000002" / "train_state.json").write_text("{")
    settings = _settings(tmp_path, auto_resume=True)
    corrupted = r"step_000002 is corrupted .* set restore_from.path to one of step_000001"
    with pytest.raises(CheckpointError, match=corrupted):
        restore_step(None, build_checkpointer(settings), settings)
    assert build_checkpointer(_settings(tmp_path, verify="size")).verify == "size"
    with pytest.raises(CheckpointError, match="verify is 'sha256'"):
        build_checkpointer(_settings(tmp_path, verify="sha256"))
    assert {"verify", "overwrite"} <= set(CHECKPOINT_KEYS)
