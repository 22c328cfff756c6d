"""DDP and FSDP2 on two real gloo processes give the single-process losses at the same global batch."""

from __future__ import annotations

import pytest
import torch
from strategy_workers import distributed_losses, reference_losses, reference_weights, tiny_llama

from automodel.distributed.config import parse_distributed_config
from automodel.distributed.parallelize import parallelize_model
from automodel.distributed.testing import run_on_ranks

REFERENCE: dict[str, object] = {}


def _reference() -> tuple[list[float], torch.Tensor]:
    if not REFERENCE:
        REFERENCE["losses"], REFERENCE["weights"] = reference_losses(), reference_weights()
    return REFERENCE["losses"], REFERENCE["weights"]


@pytest.mark.parametrize(
    ("section", "wrapper", "local_rows"),
    [
        ({"strategy": "ddp"}, "DistributedDataParallel", 64),
        ({"strategy": "fsdp2"}, "FSDPLlamaForCausalLM", 32),
        ({"strategy": "fsdp2", "activation_checkpointing": True, "reshard_after_forward": False}, None, 32),
        ({"strategy": "fsdp2", "dp_replicate_size": 2}, None, 64),
    ],
    ids=["ddp", "fsdp2", "fsdp2-ac", "hsdp"],
)
def test_two_processes_match_one_process_at_the_same_global_batch(section, wrapper, local_rows) -> None:
    losses, weights = _reference()
    results = run_on_ranks(distributed_losses, 2, args=(section,), preload=["strategy_workers"])
    for result in results:
        assert result["losses"] == pytest.approx(losses, abs=1e-5)
        torch.testing.assert_close(result["up_proj"], weights, atol=1e-5, rtol=1e-5)
        assert result["local_rows"] == local_rows
        if wrapper is not None:
            assert result["wrapper"] == wrapper
    if section.get("activation_checkpointing"):
        assert all(r["checkpointed"] for r in results)


def test_one_process_keeps_the_model_and_applies_only_activation_checkpointing() -> None:
    model = tiny_llama()
    config = parse_distributed_config({"activation_checkpointing": True})
    assert parallelize_model(model, None, config, torch.device("cpu")) is model
    assert model.model.gradient_checkpointing
    assert not any(hasattr(p, "to_local") for p in model.parameters())
