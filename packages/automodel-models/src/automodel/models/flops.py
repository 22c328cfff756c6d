"""Analytic training FLOPs per token of a dense decoder-only transformer (Llama, Qwen, Mistral family)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import PretrainedConfig

from automodel.models.errors import ModelError

_REQUIRED = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
)


def training_flops_per_token(config: Mapping[str, Any] | PretrainedConfig, seq_length: int) -> float:
    """Return the FLOPs one training step spends per token (forward + backward), counting a multiply-add as 2.

    Convention (as in the PaLM and Megatron MFU papers, with causal attention halved):

    - matmuls: ``6 * N`` where ``N`` counts the weights of every Linear layer per token: per layer
      the q, k, v, o projections (GQA: k and v have ``num_key_value_heads * head_dim`` outputs)
      and the gated MLP's gate, up and down projections; plus the LM head ``vocab_size *
      hidden_size``, counted also when tied to the embeddings (the matmul runs either way).
      Embedding lookups, norms, biases and activations are not counted.
    - attention scores and context: ``12 * layers * heads * head_dim * seq_length / 2``. A full
      ``QK^T`` and ``AV`` cost ``4 * seq_length * head_dim`` per query and head forward, three
      times that with the backward pass; with a causal mask a query sees half the keys on average.

    Args:
        config: a dict or transformers config with ``hidden_size``, ``intermediate_size``,
            ``num_hidden_layers``, ``num_attention_heads``, ``vocab_size`` and optionally
            ``num_key_value_heads`` (default: ``num_attention_heads``) and ``head_dim``
            (default: ``hidden_size // num_attention_heads``).
        seq_length: the number of tokens per training sequence (positive).

    Returns:
        FLOPs per token; multiply by tokens per second and divide by peak FLOP/s for MFU.

    Raises:
        ModelError: when a required field is missing or ``seq_length`` is not a positive integer.
    """
    fields = config.to_dict() if isinstance(config, PretrainedConfig) else dict(config)
    missing = [name for name in _REQUIRED if fields.get(name) is None]
    if missing:
        raise ModelError(
            f"config lacks {', '.join(missing)}, needed to count training FLOPs of a dense decoder; "
            "give a Llama/Qwen/Mistral-style config."
        )
    if isinstance(seq_length, bool) or not isinstance(seq_length, int) or seq_length <= 0:
        raise ModelError(f"seq_length must be a positive integer, got {seq_length!r}.")
    hidden, layers, heads = fields["hidden_size"], fields["num_hidden_layers"], fields["num_attention_heads"]
    kv_heads = fields.get("num_key_value_heads") or heads
    head_dim = fields.get("head_dim") or hidden // heads
    attention_weights = hidden * head_dim * (2 * heads + 2 * kv_heads)
    mlp_weights = 3 * hidden * fields["intermediate_size"]
    matmul_weights = layers * (attention_weights + mlp_weights) + fields["vocab_size"] * hidden
    attention_scores = 12 * layers * heads * head_dim * seq_length / 2
    return float(6 * matmul_weights + attention_scores)
