"""Tiny model configs for tests and examples: they build and run in well under a second on a CPU."""

from __future__ import annotations

from typing import Any


def tiny_llama_config(**overrides: Any) -> dict[str, Any]:
    """Return the fields of a tiny Llama (about 0.1M parameters) as a plain dict.

    The special-token ids match the tokenizer ``build_tokenizer`` writes (``<|endoftext|>`` is
    0 and serves as bos and eos, ``<|pad|>`` is 1) and ``vocab_size`` matches its default.

    Args:
        **overrides: fields to change or add (``num_hidden_layers=1``).

    Returns:
        A dict with ``model_type`` for ``AutoModelForCausalLM.from_config``.
    """
    return {
        "model_type": "llama",
        "vocab_size": 512,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
        "tie_word_embeddings": True,
        "bos_token_id": 0,
        "eos_token_id": 0,
        "pad_token_id": 1,
        **overrides,
    }
