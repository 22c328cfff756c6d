"""SIGKILL at random moments through `automodel train diffusion`: every restart resumes from the last
complete checkpoint and the run ends with the weights and the EMA of an uninterrupted one."""

from __future__ import annotations

import random
import signal
from pathlib import Path

import torch
from cli_fork import kill_after_new_steps, run_cli
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
KILLS = 4
STEPS = 40
OVERRIDES = [
    "--step_scheduler.max_steps",
    str(STEPS),
    "--step_scheduler.checkpoint_interval",
    "4",
    "--step_scheduler.log_interval",
    "1",
    "--step_scheduler.val_check_interval",
    "null",
    "--~validation_dataset",
    "--~validation",
    "--lr_scheduler.warmup_steps",
    "4",
    "--checkpoint.auto_resume",
    "true",
    "--~checkpoint.overwrite",
    "--+logging.progress_bar=false",
]


def _command(run_dir: Path) -> list[str]:
    return [
        "train",
        "diffusion",
        "-c",
        "examples/diffusion/tiny_t2i.yaml",
        "--checkpoint.dir",
        str(run_dir),
        *OVERRIDES,
    ]


def _final(run_dir: Path, folder: str) -> dict[str, torch.Tensor]:
    return load_file(run_dir / f"step_{STEPS:06d}" / folder / "transformer" / "diffusion_pytorch_model.safetensors")


def test_random_sigkills_end_with_the_uninterrupted_weights_and_ema(tmp_path):
    reference = tmp_path / "reference"
    done = run_cli(_command(reference), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]

    run_dir, rng = tmp_path / "killed", random.Random(0)
    killed = 0
    for _ in range(KILLS):
        exitcode = kill_after_new_steps(
            _command(run_dir), ROOT, run_dir, tmp_path, new_steps=3, delay=rng.uniform(0.0, 0.3)
        )
        killed += exitcode == -signal.SIGKILL
        if (run_dir / f"step_{STEPS:06d}").exists():
            break
    finished = run_cli(_command(run_dir), cwd=ROOT)
    assert finished.returncode == 0, finished.stderr[-2000:]

    assert killed >= 3
    assert not list(run_dir.glob(".*partial*"))
    for folder in ("model", "ema"):
        expected, got = _final(reference, folder), _final(run_dir, folder)
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[k], got[k]) for k in expected), folder
