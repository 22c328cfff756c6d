"""train.diffusion on two real gloo processes, under FSDP2 and under DDP, gives the one-process losses at
the same global batch: noise and timesteps are drawn per sample, not per rank."""

from __future__ import annotations

import pytest
from diffusion_distributed_workers import run_training

from automodel.distributed.testing import run_on_ranks

STEPS = 4
SECTIONS = {
    "step_scheduler": {"global_batch_size": 16, "local_batch_size": 4, "max_steps": STEPS, "log_interval": 1},
    "validation_dataset": None,
    "validation": None,
}


@pytest.mark.parametrize("scheme", ["fsdp2", "ddp"])
def test_two_processes_give_the_one_process_losses(tmp_path, scheme):
    single = run_training(str(tmp_path / "single"), {**SECTIONS, "checkpoint": {"dir": str(tmp_path / "single")}})
    out = str(tmp_path / scheme)
    results = run_on_ranks(
        run_training,
        2,
        args=(out, {**SECTIONS, "parallel_scheme": scheme, "checkpoint": {"dir": out}}),
        preload=["automodel.recipes.diffusion.train", "diffusion_distributed_workers"],
        timeout_s=300,
    )
    assert [r["dp_size"] for r in results] == [2, 2]
    assert results[0]["wrapper"].startswith("FSDP" if scheme == "fsdp2" else "DistributedDataParallel")
    assert sorted(results[0]["losses"]) == list(range(1, STEPS + 1))
    for step, loss in single["losses"].items():
        assert results[0]["losses"][step] == pytest.approx(loss, abs=1e-5), step
