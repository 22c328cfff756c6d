"""SIGKILL at random moments, ten times, through `automodel finetune llm`: every restart resumes from the
last complete checkpoint and the run ends with the weights of an uninterrupted one."""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import torch
from cli_fork import kill_after_new_steps, run_cli
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parent.parent
KILLS = 10
OVERRIDES = [
    "--step_scheduler.max_steps",
    "200",
    "--step_scheduler.checkpoint_interval",
    "5",
    "--step_scheduler.log_interval",
    "1",
    "--step_scheduler.val_check_interval",
    "null",
    "--~validation_dataset",
    "--~validation",
    "--checkpoint.auto_resume",
    "true",
    "--+logging.progress_bar=false",
]


def _command(run_dir: Path) -> list[str]:
    return [
        "finetune",
        "llm",
        "-c",
        "examples/llm_finetune/tiny_sft.yaml",
        "--checkpoint.dir",
        str(run_dir),
        *OVERRIDES,
    ]


def _final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "step_000200" / "model" / "model.safetensors")


def test_ten_random_sigkills_end_with_the_uninterrupted_weights(tmp_path):
    reference = tmp_path / "reference"
    done = run_cli(_command(reference), cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]

    run_dir, rng = tmp_path / "killed", random.Random(0)
    killed = 0
    for _ in range(KILLS):
        latest = (run_dir / "latest").read_text().strip() if (run_dir / "latest").exists() else None
        exitcode = kill_after_new_steps(
            _command(run_dir), ROOT, run_dir, tmp_path, new_steps=1, delay=rng.uniform(0.0, 0.25)
        )
        killed += exitcode == -signal.SIGKILL
        stderr = tmp_path / "stderr"
        err = stderr.read_text()
        resumed = [line for line in err.splitlines() if line.startswith("resumed from")]
        assert resumed == ([f"resumed from {run_dir / latest} at step {int(latest[5:])}"] if latest else []), err
        if (run_dir / "step_000200").exists():
            break
    finished = run_cli(_command(run_dir), cwd=ROOT)
    assert finished.returncode == 0, finished.stderr[-2000:]

    assert killed == KILLS
    assert not list(run_dir.glob(".*partial*"))
    expected, got = _final_weights(reference), _final_weights(run_dir)
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[k], got[k]) for k in expected)
    steps = [json.loads(line)["step"] for line in (run_dir / "training.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 201))
    reference_losses = [json.loads(line)["loss"] for line in (reference / "training.jsonl").read_text().splitlines()]
    losses = [json.loads(line)["loss"] for line in (run_dir / "training.jsonl").read_text().splitlines()]
    assert losses == reference_losses
