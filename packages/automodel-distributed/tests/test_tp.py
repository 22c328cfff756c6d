"""Tensor parallelism on two real gloo processes gives the single-process losses, gradients and generations."""

from __future__ import annotations

import re

import pytest
import torch
from tp_workers import TRAINING_CASES, run_all, tiny_model
from transformers import GPT2Config, GPT2LMHeadModel

from automodel.distributed.errors import DistributedError
from automodel.distributed.testing import run_on_ranks
from automodel.distributed.tp import check_divisible, choose_plan, gathered_logits, hf_plan


@pytest.fixture(scope="module")
def ranks() -> list[dict]:
    """Every rank's results of tp_workers.run_all (one two-process run for the whole module)."""
    return run_on_ranks(run_all, 2, preload=["tp_workers"])


@pytest.mark.parametrize("case", [*TRAINING_CASES, "qwen3-sp-parallelize_model"])
def test_three_training_steps_match_one_process(ranks, case) -> None:
    for rank in ranks:
        result = rank["training"][case]
        assert result["losses"] == pytest.approx(result["reference"], abs=1e-5)
        assert result["grad_difference"] < 1e-5
        assert result["plain_loss"]
        assert result["sharded_head"] == (case != "user-plan-dict")
        assert result["sharded_norm"] == case.endswith(("-sp", "-sp-parallelize_model"))


@pytest.mark.parametrize("case", ["llama-tied", "gemma", "gemma2-sp", "gemma3_text-sp"])
def test_tied_embeddings_stay_one_weight(ranks, case) -> None:
    assert all(rank["training"][case]["tied"] for rank in ranks)


def test_a_plan_that_shards_a_tied_head_apart_from_its_embedding_is_refused(ranks) -> None:
    for rank in ranks:
        assert "tie_word_embeddings: true" in rank["tied_head_only"]
        assert "distributed.tp_plan" in rank["tied_head_only"]


@pytest.mark.parametrize("variant", ["tp", "tp-sp"])
def test_generate_under_gathered_logits_matches_one_process(ranks, variant) -> None:
    for rank in ranks:
        result = rank["generation"][variant]
        assert result["tokens"] == result["expected"]
        assert result["dtensor_after"], "the gathering hook must be removed on exit"


def test_a_model_type_without_any_plan_is_refused() -> None:
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=1, n_head=2, n_positions=16))
    with pytest.raises(DistributedError, match=r"'gpt2'.*no tensor-parallel plan.*distributed\.tp_plan.*tp_size: 1"):
        choose_plan(model)


@pytest.mark.parametrize(
    ("overrides", "key", "value"),
    [
        ({"hidden_size": 48, "num_attention_heads": 3, "num_key_value_heads": 3}, "num_attention_heads", 3),
        ({"num_key_value_heads": 1}, "num_key_value_heads", 1),
        ({"intermediate_size": 127}, "intermediate_size", 127),
        ({"vocab_size": 129}, "vocab_size", 129),
    ],
)
def test_sizes_that_do_not_split_over_the_ranks_are_refused(overrides, key, value) -> None:
    shown = f"{key} ({value}) is not divisible by distributed.tp_size (2): {value} % 2 = 1"
    with pytest.raises(DistributedError, match=re.escape(shown)):
        check_divisible(tiny_model("llama", **overrides), 2)


@pytest.mark.parametrize(
    ("path", "shown"),
    [
        ("tp_workers.NO_SUCH_PLAN", "does not import"),
        ("no_such_package.plans.llama", "does not import"),
        ("tp_workers.VOCAB", "gave a int, not a mapping"),
        ("tp_workers.UNKNOWN_STYLE_PLAN", "'grouped_gemm', which automodel cannot apply"),
        ("tp_workers.TYPO_PLAN", "'model.layer.*.mlp.up_proj', which matches no module"),
    ],
)
def test_a_bad_user_plan_names_the_yaml_key(path, shown) -> None:
    with pytest.raises(DistributedError, match=f"{shown}.*distributed.tp_plan"):
        choose_plan(tiny_model("llama"), plan=path)


def test_sequence_parallel_without_a_built_in_plan_is_refused() -> None:
    with pytest.raises(DistributedError, match=r"distributed\.sequence_parallel.*'phi3'.*sequence_parallel: false"):
        choose_plan(tiny_model("phi3"), sequence_parallel=True)


def test_the_hugging_face_plan_is_translated_with_the_base_model_prefix() -> None:
    plan = hf_plan(tiny_model("phi3"))
    assert set(plan) >= {"lm_head", "model.layers.*.self_attn.qkv_proj", "model.layers.*.mlp.down_proj"}
    assert type(plan["model.layers.*.self_attn.qkv_proj"]).__name__ == "ColwiseParallel"
    assert type(plan["model.layers.*.mlp.down_proj"]).__name__ == "RowwiseParallel"


def test_gathered_logits_needs_an_output_embedding() -> None:
    with pytest.raises(DistributedError, match="no output embedding"), gathered_logits(torch.nn.Linear(2, 2)):
        pass
