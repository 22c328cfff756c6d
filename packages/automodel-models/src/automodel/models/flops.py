"""Analytic training FLOPs per token of a dense decoder-only transformer (Llama, Qwen, Mistral family)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def training_flops_per_token(
    config: Mapping[str, Any] | PretrainedConfig,
    seq_length: int,
    *,
    lora_rank: int | None = None,
    lora_shapes: Iterable[tuple[int, int]] = (),
) -> float:
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
    - with LoRA (``lora_rank`` given) every base weight is frozen: it still costs the forward
      matmul and the input-gradient matmul, ``4 * N``, but no weight gradient. Each adapter on a
      Linear of ``in`` inputs and ``out`` outputs adds ``6 * r * (in + out)``: its A (``r x in``)
      and B (``out x r``) matmuls forward, input gradient and weight gradient. Attention is
      unchanged. As in the usual convention the first layer's input gradients are counted,
      although autograd skips them when nothing before that layer trains (frozen embeddings):
      ``2 *`` its q, k, v weights, plus ``2 * r * in`` for each of them that is adapted (0.25%
      of a Llama-3.2-1B token's FLOPs).

    Args:
        config: a dict or transformers config with ``hidden_size``, ``intermediate_size``,
            ``num_hidden_layers``, ``num_attention_heads``, ``vocab_size`` and optionally
            ``num_key_value_heads`` (default: ``num_attention_heads``) and ``head_dim``
            (default: ``hidden_size // num_attention_heads``).
        seq_length: the number of tokens per training sequence (positive).
        lora_rank: the LoRA rank ``r``; None (default) counts full training of every weight.
        lora_shapes: ``(in_features, out_features)`` of every adapted Linear (one entry per
            module, e.g. ``[(m.in_features, m.out_features) for m in lora_modules(model).values()]``);
            required, and only allowed, with ``lora_rank``.

    Returns:
        FLOPs per token; multiply by tokens per second and divide by peak FLOP/s for MFU.

    Raises:
        ModelError: when a required field is missing, ``seq_length`` or ``lora_rank`` is not a positive
            integer, or ``lora_rank`` and ``lora_shapes`` are not given together.
    """
    fields = config.to_dict() if isinstance(config, PretrainedConfig) else dict(config)
    missing = [name for name in _REQUIRED if fields.get(name) is None]
    if missing:
        raise ModelError(
            f"config lacks {', '.join(missing)}, needed to count training FLOPs of a dense decoder; "
            "give a Llama/Qwen/Mistral-style config."
        )
    if not _positive_int(seq_length):
        raise ModelError(f"seq_length must be a positive integer, got {seq_length!r}.")
    hidden, layers, heads = fields["hidden_size"], fields["num_hidden_layers"], fields["num_attention_heads"]
    kv_heads = fields.get("num_key_value_heads") or heads
    head_dim = fields.get("head_dim") or hidden // heads
    attention_weights = hidden * head_dim * (2 * heads + 2 * kv_heads)
    mlp_weights = 3 * hidden * fields["intermediate_size"]
    matmul_weights = layers * (attention_weights + mlp_weights) + fields["vocab_size"] * hidden
    attention_scores = 12 * layers * heads * head_dim * seq_length / 2
    adapters = _lora_adapter_flops(lora_rank, lora_shapes)
    if adapters is None:
        return float(6 * matmul_weights + attention_scores)
    return float(4 * matmul_weights + adapters + attention_scores)


def _positive_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int) and value > 0


def _lora_adapter_flops(rank: int | None, shapes: Iterable[tuple[int, int]]) -> int | None:
    """Return the adapters' training FLOPs per token, ``sum(6 * r * (in + out))``, or None without LoRA."""
    shapes = list(shapes)
    if rank is None:
        if shapes:
            raise ModelError("lora_shapes was given without lora_rank; give the adapters' rank too.")
        return None
    if not _positive_int(rank):
        raise ModelError(f"lora_rank must be a positive integer, got {rank!r}.")
    if not shapes:
        raise ModelError("lora_rank was given without lora_shapes; list (in_features, out_features) of every adapter.")
    if not all(
        isinstance(shape, (tuple, list)) and len(shape) == 2 and all(_positive_int(size) for size in shape)
        for shape in shapes
    ):
        raise ModelError(f"lora_shapes must be (in_features, out_features) pairs of positive integers, got {shapes!r}.")
    return sum(6 * rank * (fan_in + fan_out) for fan_in, fan_out in shapes)
