"""The default job through a real SLURM cluster of two nodes: sbatch, torchrun on each node, preemption and requeue.

The cluster (munged, slurmctld and two slurmd) runs on this machine; see slurm_cluster.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_cluster import slurm_available, start_cluster

ROOT = Path(__file__).resolve().parent.parent
AUTOMODEL = str(Path(sys.executable).parent / "automodel")
RUN = [
    "--step_scheduler.max_steps", "120",
    "--step_scheduler.local_batch_size", "16",
    "--step_scheduler.val_check_interval", "60",
    "--validation.generation.num_samples", "32",
    "--+distributed.strategy", "fsdp2",
    "--+slurm.nodes", "2",
    "--+slurm.cpus_per_task", "1",
]  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = slurm_available()
    if reason is not None:
        pytest.skip(reason)
    with start_cluster(tmp_path_factory.mktemp("slurm"), nodes=2) as running:
        yield running


def _submit(cluster, out: Path) -> str:
    command = [AUTOMODEL, "finetune", "llm", "-c", "examples/llm_finetune/tiny_sft.yaml", *RUN]
    command += ["--checkpoint.dir", str(out / "ckpt"), "--+slurm.job_dir", str(out / "job")]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=cluster.env, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "submitted SLURM job" in result.stdout, result.stdout
    return result.stdout.split("submitted SLURM job ")[1].split(":")[0]


def _losses(out: Path) -> dict[int, float]:
    lines = (out / "ckpt" / "training.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}


def _log(out: Path, job_id: str) -> str:
    return (out / "job" / f"slurm-{job_id}.out").read_text()


@pytest.fixture(scope="module")
def uninterrupted(cluster, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    job_id = _submit(cluster, out)
    state = cluster.wait_job(job_id, timeout=600)
    assert state["JobState"] == "COMPLETED", _log(out, job_id)[-3000:]
    return out, job_id


def test_a_two_node_job_trains_to_the_end_with_one_process_per_node(uninterrupted):
    out, job_id = uninterrupted
    log = _log(out, job_id)
    assert "2 processes (gloo), fsdp2: dp_replicate=1 x dp_shard=2" in log
    assert sorted(_losses(out)) == list(range(10, 121, 10))
    assert (out / "ckpt" / "latest").read_text().strip() == "step_000120"
    assert "slurm" not in (out / "job" / "config.yaml").read_text()


def test_usr1_mid_run_saves_requeues_and_finishes_with_the_uninterrupted_loss(cluster, uninterrupted, tmp_path):
    reference, _ = uninterrupted
    job_id = _submit(cluster, tmp_path)
    log = tmp_path / "ckpt" / "training.jsonl"
    deadline = time.monotonic() + 300
    while not (log.exists() and len(log.read_text().splitlines()) >= 3):
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.5)
    cluster.run(["scancel", "--signal=USR1", "--batch", job_id])
    state = cluster.wait_job(job_id, timeout=600)
    text = _log(tmp_path, job_id)
    assert state["JobState"] == "COMPLETED", text[-3000:]
    assert int(state["Restarts"]) >= 1
    assert "requeueing job" in text and "resumed from" in text
    after, before = _losses(tmp_path), _losses(reference)
    assert after[120] == pytest.approx(before[120], abs=1e-5)
