"""A run SIGKILLed again and again (mid-save, at random moments), then SIGTERMed, ends like an uninterrupted one."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Callable
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path

import torch
from checkpoint_kill_train import main
from checkpoint_test_helpers import build_run, train

from automodel.checkpoint import load_hf_weights

STEPS, EVERY, BALLAST = 24, 3, 4_000_000  # the 16 MB ballast buffer makes each save take a while


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _steps_logged(run_dir: Path) -> int:
    path = run_dir / "events.jsonl"
    return path.read_text().count('"step"') if path.exists() else 0


def _partial_dirs(ckpt: Path, pid: int | str = "*") -> list[Path]:
    """The folders of unfinished saves (of process ``pid``)."""
    return list(ckpt.glob(f".step_*.partial-{pid}")) if ckpt.exists() else []


def _start(forkserver: ForkServerContext, run_dir: Path, async_save: bool) -> BaseProcess:
    argv = [str(run_dir), "--steps", str(STEPS), "--every", str(EVERY), "--ballast", str(BALLAST)]
    process = forkserver.Process(target=main, args=(argv + (["--async-save"] if async_save else []),))
    process.start()
    return process


def _wait_for(condition: Callable[[], object], process: BaseProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.is_alive(), f"the run ended early with exit status {process.exitcode}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_sigkill_mid_save_and_at_random_moments_then_sigterm_ends_like_an_uninterrupted_run(
    tmp_path, forkserver
) -> None:
    reference = build_run(ballast=BALLAST)
    expected_losses = train(reference, STEPS)
    ckpt = tmp_path / "ckpt"
    chance = random.Random(0)
    killed_mid_save = 0

    for async_save, moment in [(False, "save"), (True, "random"), (True, "save"), (False, "random")]:
        process = _start(forkserver, tmp_path, async_save)
        steps_before = _steps_logged(tmp_path)
        if moment == "save":  # once a checkpoint exists, kill this process in the middle of one of its saves
            pid = process.pid
            _wait_for(lambda pid=pid: (ckpt / "latest").exists() and _partial_dirs(ckpt, pid), process)
        else:  # after 1 to 4 more steps and up to 50 ms: in a step, in a save, or between the two
            target = steps_before + chance.randint(1, 4)
            _wait_for(lambda target=target: _steps_logged(tmp_path) >= target, process)
            time.sleep(chance.uniform(0.0, 0.05))
        process.kill()
        process.join()
        assert process.exitcode == -signal.SIGKILL
        killed_mid_save += bool(_partial_dirs(ckpt, process.pid))

    process = _start(forkserver, tmp_path, async_save=False)
    steps_before = _steps_logged(tmp_path)
    _wait_for(lambda: _steps_logged(tmp_path) > steps_before, process)
    process.terminate()  # SIGTERM: SaveOnSignal lets the loop save and exit 0
    process.join(timeout=60)
    assert process.exitcode == 0
    stopped = _events(tmp_path)[-1]
    assert stopped["signal"] == "SIGTERM"
    assert (ckpt / "latest").read_text().strip() == f"step_{stopped['saved']:06d}"

    process = _start(forkserver, tmp_path, async_save=True)
    process.join(timeout=60)
    assert process.exitcode == 0

    events = _events(tmp_path)
    assert events[-1] == {"done": True}
    assert killed_mid_save >= 2  # the kills really landed in the middle of saves
    resumed = [Path(e["resumed"]) for e in events if "resumed" in e]
    assert len(resumed) >= 4 and all(p.name.startswith("step_") and ".partial" not in str(p) for p in resumed)
    for event in events:  # every step, also those run again after a kill, has the uninterrupted loss
        if "step" in event:
            assert event["loss"] == expected_losses[event["step"] - 1], event
    final = load_hf_weights(ckpt / f"step_{STEPS:06d}" / "model")
    assert all(torch.equal(final[k], v) for k, v in reference.model.state_dict().items())
    assert not _partial_dirs(ckpt)
    assert sorted(p.name for p in ckpt.glob("step_*")) == [f"step_{STEPS - EVERY:06d}", f"step_{STEPS:06d}"]


def test_ctrl_c_saves_at_the_next_step_and_exits_zero(tmp_path, forkserver) -> None:
    process = _start(forkserver, tmp_path, async_save=False)
    _wait_for(lambda: _steps_logged(tmp_path) >= 2, process)
    os.kill(process.pid, signal.SIGINT)
    process.join(timeout=60)
    assert process.exitcode == 0
    stopped = _events(tmp_path)[-1]
    assert stopped["signal"] == "SIGINT"
    assert (tmp_path / "ckpt" / "latest").read_text().strip() == f"step_{stopped['saved']:06d}"
