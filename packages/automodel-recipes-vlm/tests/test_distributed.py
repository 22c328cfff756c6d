"""finetune.vlm on two real gloo processes under FSDP2 gives the one-process losses at the same global batch."""

from __future__ import annotations

import pytest
from vlm_distributed_workers import run_finetune

from automodel.distributed.testing import run_on_ranks

STEPS = 5
SECTIONS = {
    "step_scheduler": {"global_batch_size": 16, "local_batch_size": 4, "max_steps": STEPS, "log_interval": 1},
    "validation_dataset": None,
    "validation": None,
    "lr_scheduler": None,
}


def test_two_fsdp2_processes_give_the_one_process_losses(tmp_path):
    single = run_finetune(str(tmp_path / "single"), SECTIONS)
    results = run_on_ranks(
        run_finetune,
        2,
        args=(str(tmp_path / "fsdp2"), {**SECTIONS, "distributed": {"strategy": "fsdp2"}}),
        preload=["automodel.recipes.vlm.finetune", "vlm_distributed_workers"],
        timeout_s=300,
    )
    assert [r["dp_size"] for r in results] == [2, 2]
    assert results[0]["wrapper"].startswith("FSDP")
    assert sorted(results[0]["losses"]) == list(range(1, STEPS + 1))
    for step, loss in single["losses"].items():
        assert results[0]["losses"][step] == pytest.approx(loss, abs=1e-5), step
