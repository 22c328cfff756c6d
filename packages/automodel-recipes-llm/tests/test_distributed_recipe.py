"""train_ft on two real gloo processes: DDP, FSDP2 and TP give the one-process losses; checkpoints change layout."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from recipe_distributed_workers import run_train_ft, run_train_ft_signalling_rank1
from recipe_test_helpers import read_jsonl
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from automodel.distributed.testing import run_on_ranks

STEPS = 6


def _schedule(**extra) -> dict:
    return {"global_batch_size": 16, "local_batch_size": 4, "max_steps": STEPS, "log_interval": 1, **extra}


def _sections(distributed: dict | None, **extra) -> dict:
    sections = {"step_scheduler": _schedule(), "validation_dataset": None, **extra}
    if distributed is not None:
        sections["distributed"] = distributed
    return sections


def _on_two_ranks(task, out, sections) -> list[dict]:
    return run_on_ranks(
        run_train_ft,
        2,
        args=(str(task), str(out), sections),
        preload=["automodel.recipes.llm.train_ft", "recipe_distributed_workers"],
        timeout_s=300,
    )


@pytest.fixture(scope="module")
def one_process_losses(task, tmp_path_factory) -> dict[int, float]:
    out = tmp_path_factory.mktemp("single")
    return run_train_ft(str(task), str(out), _sections(None))["losses"]


@pytest.mark.parametrize(
    ("distributed", "wrapper", "dp_size"),
    [
        ({"strategy": "ddp"}, "DistributedDataParallel", 2),
        ({"strategy": "fsdp2"}, "FSDPLlamaForCausalLM", 2),
        ({"strategy": "fsdp2", "tp_size": 2}, "FSDPLlamaForCausalLM", 1),
    ],
    ids=["ddp", "fsdp2", "tp2"],
)
def test_two_processes_give_the_one_process_losses(task, tmp_path, one_process_losses, distributed, wrapper, dp_size):
    results = _on_two_ranks(task, tmp_path, _sections(distributed))
    assert [r["dp_size"] for r in results] == [dp_size, dp_size]
    assert results[0]["wrapper"] == wrapper
    assert results[1]["losses"] is not None  # every rank reads the shared log after the run
    assert sorted(results[0]["losses"]) == list(range(1, STEPS + 1))
    for step, loss in one_process_losses.items():
        assert results[0]["losses"][step] == pytest.approx(loss, abs=1e-5), step


def test_an_fsdp2_checkpoint_loads_in_transformers_and_resumes_on_one_process_or_under_ddp(task, tmp_path):
    fsdp2 = {"strategy": "fsdp2"}
    full = tmp_path / "full"
    _on_two_ranks(task, full, _sections(fsdp2, step_scheduler=_schedule(checkpoint_interval=3)))
    uninterrupted = {r["step"]: r["loss"] for r in read_jsonl(full / "training.jsonl")}
    model = AutoModelForCausalLM.from_pretrained(full / "step_000003" / "model")
    assert model.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32

    restore = {"restore_from": {"path": str(full / "step_000003")}}
    one = run_train_ft(str(task), str(tmp_path / "one"), _sections(None, **restore))["losses"]
    ddp = _on_two_ranks(task, tmp_path / "ddp", _sections({"strategy": "ddp"}, **restore))[0]["losses"]
    for resumed in (one, ddp):
        assert sorted(resumed) == [4, 5, 6]
        for step, loss in resumed.items():
            assert loss == pytest.approx(uninterrupted[step], abs=1e-5), step


def test_lora_under_fsdp2_gives_the_one_process_losses_and_the_same_adapter(task, tmp_path):
    lora = {"_target_": "automodel.peft.LoRAConfig", "dim": 16, "alpha": 16, "match_all_linear": True}
    sections = _sections(None, peft=lora)
    single = run_train_ft(str(task), str(tmp_path / "one"), sections)["losses"]
    two = _on_two_ranks(task, tmp_path / "two", {**sections, "distributed": {"strategy": "fsdp2"}})[0]["losses"]
    for step, loss in single.items():
        assert two[step] == pytest.approx(loss, abs=1e-5), step
    saved = [
        load_file(tmp_path / run / f"step_{STEPS:06d}" / "model" / "adapter_model.safetensors")
        for run in ("one", "two")
    ]
    assert saved[0].keys() == saved[1].keys()
    for name, tensor in saved[0].items():
        torch.testing.assert_close(saved[1][name], tensor, atol=1e-5, rtol=1e-4)
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "two" / "base_model")
    adapted = PeftModel.from_pretrained(base, tmp_path / "two" / f"step_{STEPS:06d}" / "model")
    assert adapted.peft_config["default"].r == 16


def test_lora_on_a_pretrained_base_sharded_before_loading_gives_the_one_process_losses(task, tmp_path):
    lora = {"_target_": "automodel.peft.LoRAConfig", "dim": 8, "alpha": 16, "match_all_linear": True}
    base = run_train_ft(str(task), str(tmp_path / "base"), _sections(None, peft=lora))  # writes base_model
    assert base["sharded_before_loading"] is False
    model = {
        "_target_": "automodel.models.AutoModelForCausalLM.from_pretrained",
        "pretrained_model_name_or_path": str(tmp_path / "base" / "base_model"),
    }
    sections = _sections(None, peft=lora, model=model)
    single = run_train_ft(str(task), str(tmp_path / "one"), sections)
    two = _on_two_ranks(task, tmp_path / "two", {**sections, "distributed": {"strategy": "fsdp2"}})
    assert [rank["sharded_before_loading"] for rank in two] == [True, True]
    for step, loss in single["losses"].items():
        assert two[0]["losses"][step] == pytest.approx(loss, abs=1e-5), step
    saved = [
        load_file(tmp_path / run / f"step_{STEPS:06d}" / "model" / "adapter_model.safetensors")
        for run in ("one", "two")
    ]
    for name, tensor in saved[0].items():
        torch.testing.assert_close(saved[1][name], tensor, atol=1e-5, rtol=1e-4)


def test_a_signal_to_one_rank_stops_every_rank_at_the_same_step_with_a_checkpoint(task, tmp_path):
    sections = _sections({"strategy": "fsdp2"}, step_scheduler=_schedule(max_steps=2000))
    results = run_on_ranks(
        run_train_ft_signalling_rank1,
        2,
        args=(str(task), str(tmp_path), sections),
        preload=["automodel.recipes.llm.train_ft", "recipe_distributed_workers"],
    )
    steps = {r["step"] for r in results}
    assert len(steps) == 1 and 0 < steps.pop() < 2000
    latest = (tmp_path / "latest").read_text().strip()
    assert latest == f"step_{results[0]['step']:06d}"
