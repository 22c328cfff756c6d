"""finetune.retrieval on two real gloo processes: with cross-device negatives each rank scores its queries
against both ranks' passages, which gives the one-process losses at the same global batch (FSDP2 and DDP)."""

from __future__ import annotations

import pytest
from retrieval_distributed_workers import run_finetune
from retrieval_recipe_helpers import WITHOUT_DROPOUT

from automodel.distributed.testing import run_on_ranks

STEPS = 4
SECTIONS = {
    "step_scheduler": {
        "global_batch_size": 16,
        "local_batch_size": 8,
        "max_steps": STEPS,
        "log_interval": 1,
        "val_check_interval": STEPS,
    },
    "loss_fn": {"_target_": "automodel.training.InfoNCELoss", "cross_device_negatives": True},
    "model": WITHOUT_DROPOUT,
}


@pytest.mark.parametrize("strategy", ["fsdp2", "ddp"])
def test_two_processes_with_cross_device_negatives_give_the_one_process_losses(tmp_path, strategy):
    one = {**SECTIONS, "step_scheduler": {**SECTIONS["step_scheduler"], "local_batch_size": 16}}
    single = run_finetune(str(tmp_path / "single"), one)
    results = run_on_ranks(
        run_finetune,
        2,
        args=(str(tmp_path / strategy), {**SECTIONS, "distributed": {"strategy": strategy}}),
        preload=["automodel.recipes.retrieval.finetune", "retrieval_distributed_workers"],
        timeout_s=300,
    )
    assert [r["dp_size"] for r in results] == [2, 2]
    assert sorted(results[0]["losses"]) == list(range(1, STEPS + 1))
    for step, loss in single["losses"].items():
        assert results[0]["losses"][step] == pytest.approx(loss, abs=1e-5), step
    assert results[0]["validation"][-1]["ndcg@10"] == pytest.approx(single["validation"][-1]["ndcg@10"], abs=1e-6)
