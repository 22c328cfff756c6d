"""The default job on two processes through the CLI: `--nproc-per-node 2` plus one `distributed:` line.

The same global batch gives the one-process losses (the golden run), the model still learns
the task, and the saved model loads in plain transformers.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = json.loads((ROOT / "tests" / "golden" / "tiny_sft_losses.json").read_text())
EXACT_STEPS = 40  # fp32 sums in a different order drift past 1e-5 after this many steps


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize(
    ("distributed", "layout"),
    [
        (["--+distributed.strategy", "fsdp2"], "fsdp2: dp_replicate=1 x dp_shard=2 x cp=1 x tp=1"),
        (["--+distributed.strategy", "ddp"], "ddp: dp_replicate=1 x dp_shard=2 x cp=1 x tp=1"),
        (["--+distributed.tp_size", "2"], "fsdp2: dp_replicate=1 x dp_shard=1 x cp=1 x tp=2"),
    ],
    ids=["fsdp2", "ddp", "tp2"],
)
def test_two_processes_learn_the_default_job_with_the_one_process_losses(tmp_path, distributed, layout):
    automodel = str(Path(sys.executable).parent / "automodel")
    # Two data-parallel ranks read half the batch each; under TP both ranks read the whole batch.
    local = [] if "--+distributed.tp_size" in distributed else ["--step_scheduler.local_batch_size", "16"]
    command = [automodel, "finetune", "llm", "-c", "examples/llm_finetune/tiny_sft.yaml", "--nproc-per-node", "2"]
    result = subprocess.run(
        [*command, "--checkpoint.dir", str(tmp_path), *distributed, *local],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"2 processes (gloo), {layout}" in result.stderr
    losses = {r["step"]: r["loss"] for r in _jsonl(tmp_path / "training.jsonl")}
    for step, loss in GOLDEN.items():
        if int(step) <= EXACT_STEPS:
            assert losses[int(step)] == pytest.approx(loss, abs=1e-5), step
    assert _jsonl(tmp_path / "validation.jsonl")[-1]["exact_match"] > 0.9
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "step_000400" / "model")
    assert model.config.hidden_size == 128
