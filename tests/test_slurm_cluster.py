"""The local SLURM test cluster itself: two idle nodes, a two-node srun job, and USR1 + self-requeue."""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from slurm_cluster import Cluster, slurm_available, start_cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """A two-node cluster shared by this module's tests; skipped where SLURM/munge are not installed."""
    reason = slurm_available()
    if reason:
        pytest.skip(reason)
    with start_cluster(tmp_path_factory.mktemp("slurm")) as running:
        yield running


def _script(directory: Path, body: str) -> Path:
    """Write a bash batch script into ``directory`` and return its path."""
    path = directory / "job.sh"
    path.write_text("#!/bin/bash\n" + textwrap.dedent(body))
    return path


def _wait_file(path: Path, timeout: float = 20) -> None:
    """Wait until ``path`` exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} not written within {timeout} s"
        time.sleep(0.05)


def test_nodes_idle(cluster: Cluster) -> None:
    """Both slurmd register and are idle."""
    assert cluster.node_states() == {"node1": "idle", "node2": "idle"}


def test_two_node_srun_job(cluster: Cluster, tmp_path: Path) -> None:
    """A 2-node job runs one task per node, each with its own SLURM_NODEID/SLURM_PROCID, output where asked."""
    script = _script(
        tmp_path,
        """\
        srun bash -c 'echo "task node=$SLURM_NODEID proc=$SLURM_PROCID name=$SLURMD_NODENAME"'
    """,
    )
    job_id = cluster.submit(
        ["--nodes=2", "--ntasks-per-node=1", f"--chdir={tmp_path}", f"--output={tmp_path}/job-%j.out", str(script)]
    )
    job = cluster.wait_job(job_id, timeout=30)
    output = (tmp_path / f"job-{job_id}.out").read_text()
    assert (job["JobState"], job["ExitCode"], job["NodeList"]) == ("COMPLETED", "0:0", "node[1-2]"), output
    tasks = sorted(line for line in output.splitlines() if line.startswith("task "))
    assert tasks == ["task node=0 proc=0 name=node1", "task node=1 proc=1 name=node2"], output


def test_usr1_then_self_requeue(cluster: Cluster, tmp_path: Path) -> None:
    """A job gets USR1 from scancel, requeues itself, and its second run (SLURM_RESTART_COUNT=1) exits 0."""
    script = _script(
        tmp_path,
        f"""\
        echo "run restart=${{SLURM_RESTART_COUNT:-0}}"
        if [ "${{SLURM_RESTART_COUNT:-0}}" -ge 1 ]; then exit 0; fi
        trap 'echo got USR1; touch {tmp_path}/usr1; scontrol requeue $SLURM_JOB_ID; exit 0' USR1
        touch {tmp_path}/ready
        while true; do sleep 0.1; done
    """,
    )
    job_id = cluster.submit(
        ["--requeue", "--open-mode=append", f"--chdir={tmp_path}", f"--output={tmp_path}/job.out", str(script)]
    )
    _wait_file(tmp_path / "ready")
    cluster.run(["scancel", "--signal=USR1", "--batch", job_id])
    _wait_file(tmp_path / "usr1")
    job = cluster.wait_job(job_id, timeout=30)
    output = (tmp_path / "job.out").read_text()
    assert (job["JobState"], job["ExitCode"], job["Restarts"]) == ("COMPLETED", "0:0", "1"), output
    assert [line for line in output.splitlines() if not line.startswith("slurmstepd")] == [
        "run restart=0",
        "got USR1",
        "run restart=1",
    ]
