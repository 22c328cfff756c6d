"""Models built on the meta device, sharded (FSDP2, TP, both) and only then given their weights: the weights and
logits of the one-process model, each rank reading only its slices of the files, and a model larger than a
process may hold trains where building it whole fails."""

from __future__ import annotations

import math

import pytest
import sharded_loading_workers as workers
import torch

from automodel.distributed.testing import run_on_ranks
from automodel.models import AutoModelForCausalLM

PRELOAD = ("sharded_loading_workers", "automodel.models", "automodel.peft", "transformers")


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> str:
    """A saved model (from CONFIG, seed 3) in safetensors files."""
    folder = tmp_path_factory.mktemp("pretrained")
    AutoModelForCausalLM.from_config(workers.CONFIG, seed=3).save_pretrained(folder)
    return str(folder)


def one_process(source: str | None, lora: bool = False) -> dict:
    """The same build on this one process, as today: whole model, no deferral."""
    return workers.weights_and_logits(source, {}, lora=lora)


def assert_same_model(ranks: list[dict], expected: dict) -> None:
    for result in ranks:
        assert result["state"].keys() == expected["state"].keys()
        for name, value in expected["state"].items():
            assert torch.equal(result["state"][name], value), name
        torch.testing.assert_close(result["logits"], expected["logits"], rtol=1e-5, atol=1e-5)
        assert torch.equal(result["rng"], expected["rng"])


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_fsdp2_from_a_config_gives_the_one_process_weights(lora) -> None:
    ranks = run_on_ranks(workers.weights_and_logits, 2, (None, {"strategy": "fsdp2"}, "sharded", lora), preload=PRELOAD)
    assert_same_model(ranks, one_process(None, lora))
    assert all(result["report"].tensors_initialized > 0 and result["report"].bytes_read == 0 for result in ranks)


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_fsdp2_from_pretrained_files_each_rank_reads_its_half(pretrained, lora) -> None:
    ranks = run_on_ranks(
        workers.weights_and_logits, 2, (pretrained, {"strategy": "fsdp2"}, "sharded", lora), preload=PRELOAD
    )
    assert_same_model(ranks, one_process(pretrained, lora))
    reports = [result["report"] for result in ranks]
    total = reports[0].bytes_in_files
    assert all(report.bytes_read <= 0.6 * total for report in reports), [r.bytes_read for r in reports]
    assert sum(report.bytes_read for report in reports) >= total


def test_rank0_broadcast_reads_on_rank_0_alone(pretrained) -> None:
    ranks = run_on_ranks(
        workers.weights_and_logits, 2, (pretrained, {"strategy": "fsdp2"}, "rank0_broadcast"), preload=PRELOAD
    )
    assert_same_model(ranks, one_process(pretrained))
    reports = [result["report"] for result in ranks]
    assert reports[0].bytes_read == reports[0].bytes_in_files and reports[1].bytes_read == 0


@pytest.mark.parametrize(
    ("world_size", "distributed", "most"),
    [(2, {"tp_size": 2}, 0.6), (4, {"tp_size": 2}, 0.35)],
    ids=["tp2", "fsdp2x_tp2"],
)
def test_tensor_parallel_ranks_read_only_their_slices(pretrained, world_size, distributed, most) -> None:
    ranks = run_on_ranks(workers.weights_and_logits, world_size, (pretrained, distributed), preload=PRELOAD)
    expected = one_process(pretrained)
    for result in ranks:
        torch.testing.assert_close(result["logits"], expected["logits"], rtol=1e-5, atol=1e-5)
        for name, value in expected["state"].items():
            assert torch.equal(result["state"][name], value), name
        report = result["report"]
        assert report.bytes_read <= most * report.bytes_in_files, (report.bytes_read, report.bytes_in_files)


BIG = {**workers.CONFIG, "vocab_size": 8192, "hidden_size": 512, "intermediate_size": 1408, "num_hidden_layers": 80}
BIG |= {"num_attention_heads": 8, "num_key_value_heads": 8, "max_position_embeddings": 128}


@pytest.fixture(scope="module")
def big_pretrained(tmp_path_factory) -> tuple[str, int]:
    """A 262M-parameter model (1.05 GB in fp32, in 80 blocks) saved in files of at most 40 MB; returns its
    folder and size."""
    folder = tmp_path_factory.mktemp("big")
    model = AutoModelForCausalLM.from_config(BIG, seed=3)
    size = sum(p.numel() * p.element_size() for p in model.parameters())
    model.save_pretrained(folder, max_shard_size="40MB")
    del model
    return str(folder), size


def test_a_model_larger_than_a_process_may_hold_trains_when_sharded_before_it_is_loaded(big_pretrained) -> None:
    folder, size = big_pretrained
    limit = int(0.9 * size)  # each rank may grow by 90% of the whole model: half of it, and room to read and train
    try:
        whole = run_on_ranks(
            workers.lora_training_under_memory_limit, 2, (folder, "full", limit, 2), preload=PRELOAD, timeout_s=60
        )
        assert all("out_of_memory" in result for result in whole), whole
    except RuntimeError as error:  # a rank out of memory while sending its result dies without one
        assert "gave no result" in str(error) or "memory" in str(error).lower(), str(error)[-2000:]
    sharded = run_on_ranks(
        workers.lora_training_under_memory_limit, 2, (folder, "sharded", limit, 2), preload=PRELOAD, timeout_s=120
    )
    losses = [result.get("losses") for result in sharded]
    assert losses[0] is not None and losses[0] == losses[1] and all(map(math.isfinite, losses[0])), sharded
