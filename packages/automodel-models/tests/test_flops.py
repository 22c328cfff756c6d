"""training_flops_per_token: 6 x the Linear weights of the real model plus causal attention, checked against
the FLOPs torch counts in a real training step; the LoRA adjustment by hand (and against torch in the recipe tests)."""

from __future__ import annotations

import pytest
import torch
from models_test_helpers import linear_weight_count, token_batch
from torch.utils.flop_counter import FlopCounterMode

from automodel.models import AutoModelForCausalLM, ModelError, tiny_llama_config, training_flops_per_token

# name -> (config fields, head_dim the model uses)
CONFIGS = {
    "llama-tied-gqa": (tiny_llama_config(), 16),
    "llama-untied-wide-heads": (tiny_llama_config(tie_word_embeddings=False, head_dim=32, num_key_value_heads=4), 32),
    "mistral": (tiny_llama_config(model_type="mistral", num_key_value_heads=1), 16),
    "qwen2-with-biases": (tiny_llama_config(model_type="qwen2", num_key_value_heads=1), 16),
}


@pytest.mark.parametrize(("fields", "head_dim"), CONFIGS.values(), ids=CONFIGS.keys())
def test_matmul_part_is_six_times_the_linear_weights_of_the_built_model(fields, head_dim):
    model = AutoModelForCausalLM.from_config(fields)
    attention = 12 * fields["num_hidden_layers"] * fields["num_attention_heads"] * head_dim * 128 / 2
    assert training_flops_per_token(model.config, 128) - attention == 6 * linear_weight_count(model)
    assert training_flops_per_token(fields, 128) == training_flops_per_token(model.config, 128)


def test_tiny_llama_flops_by_hand():
    # per layer: q 64x64, k and v 64x32 each, o 64x64, MLP 3 x 64x128; LM head 512x64
    matmul = 2 * (64 * 64 * 2 + 64 * 32 * 2 + 3 * 64 * 128) + 512 * 64
    attention = 12 * 2 * 4 * 16 * 256 / 2
    assert training_flops_per_token(tiny_llama_config(), 256) == 6 * matmul + attention


def test_attention_part_grows_linearly_with_sequence_length():
    config = tiny_llama_config()
    per_token_of_context = training_flops_per_token(config, 2) - training_flops_per_token(config, 1)
    assert training_flops_per_token(config, 1001) - training_flops_per_token(config, 1) == 1000 * per_token_of_context
    assert per_token_of_context == 6 * 2 * 4 * 16


def test_missing_fields_are_named():
    fields = {k: v for k, v in tiny_llama_config().items() if k not in ("intermediate_size", "vocab_size")}
    with pytest.raises(ModelError, match=r"config lacks intermediate_size, vocab_size"):
        training_flops_per_token(fields, 128)


@pytest.mark.parametrize("seq_length", [0, -5, 12.5, True])
def test_sequence_length_must_be_a_positive_integer(seq_length):
    with pytest.raises(ModelError, match=r"seq_length must be a positive integer"):
        training_flops_per_token(tiny_llama_config(), seq_length)


def test_lora_counts_frozen_weights_at_four_and_adapters_at_six_times_rank_times_fan():
    config, seq = tiny_llama_config(), 64
    full = training_flops_per_token(config, seq)
    attention = 12 * 2 * 4 * 16 * seq / 2
    shapes = [(64, 64), (64, 32), (128, 64)]
    lora = training_flops_per_token(config, seq, lora_rank=4, lora_shapes=shapes)
    adapters = 6 * 4 * ((64 + 64) + (64 + 32) + (128 + 64))
    assert lora - attention == (full - attention) / 6 * 4 + adapters


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lora_rank": 8}, "lora_rank was given without lora_shapes"),
        ({"lora_shapes": [(64, 64)]}, "lora_shapes was given without lora_rank"),
        ({"lora_rank": 0, "lora_shapes": [(64, 64)]}, "lora_rank must be a positive integer"),
        ({"lora_rank": 8, "lora_shapes": [(64,)]}, r"lora_shapes must be \(in_features, out_features\) pairs"),
    ],
)
def test_lora_arguments_are_checked(kwargs, message):
    with pytest.raises(ModelError, match=message):
        training_flops_per_token(tiny_llama_config(), 16, **kwargs)


def _counted_flops(model: torch.nn.Module, ids: torch.Tensor) -> dict[str, int]:
    """FLOPs that FlopCounterMode counts in one forward and backward of ``model`` on ``ids``, by op name."""
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids).logits.float().sum().backward()
    return {str(op).removeprefix("aten."): count for op, count in counter.get_flop_counts()["Global"].items()}


@pytest.mark.parametrize(("fields", "head_dim"), CONFIGS.values(), ids=CONFIGS.keys())
def test_the_formula_matches_the_matmuls_torch_counts_in_a_training_step(fields, head_dim):
    model = AutoModelForCausalLM.from_config(fields, seed=0, attn_implementation="sdpa")
    batch, seq = 2, 32
    counted = _counted_flops(model, token_batch(fields["vocab_size"], batch, seq))
    tokens = batch * seq
    sdpa_forward = counted.pop("_scaled_dot_product_flash_attention_for_cpu")
    sdpa_backward = counted.pop("_scaled_dot_product_flash_attention_for_cpu_backward")
    assert set(counted) <= {"mm", "addmm", "bmm"}, counted
    attention = 12 * fields["num_hidden_layers"] * fields["num_attention_heads"] * head_dim * seq / 2
    # Linear layers: forward, input gradient and weight gradient, exactly.
    assert training_flops_per_token(model.config, seq) - attention == sum(counted.values()) / tokens
    # torch counts SDPA with no causal saving (4 * s * d per query and head forward), and its
    # backward as 5 matmuls (one recomputes QK^T); the model needs 3x forward, halved when causal.
    assert sdpa_backward == sdpa_forward * 10 / 4
    assert attention == 3 * sdpa_forward / tokens / 2
