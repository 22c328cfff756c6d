"""training_flops_per_token: 6 x the Linear weights of the real model plus causal attention."""

from __future__ import annotations

import pytest
from models_test_helpers import linear_weight_count

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
