"""Tiny model configs for tests and examples (a Llama, a Llava): they build and run in well under a second on a CPU."""

from __future__ import annotations

from typing import Any

from automodel.models.errors import ModelError


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


def tiny_vlm_config(*, image_size: int = 32, patch_size: int = 8, **overrides: Any) -> dict[str, Any]:
    """Return the fields of a tiny Llava (a CLIP vision tower and ``tiny_llama_config``) as a plain dict.

    The vision tower is 32 wide with 2 layers; an image of ``image_size`` pixels square becomes
    ``(image_size // patch_size) ** 2`` image tokens (16 by default). All its layers feed the
    projector (``vision_feature_layer=-1``); only CLIP's ``post_layernorm``, which Llava never
    uses, gets no gradient. The token ids match
    the tokenizer ``build_tiny_vlm`` writes: ``<image>`` is 4, ``<|endoftext|>`` 0 (bos, eos), ``<|pad|>`` 1.

    Args:
        image_size: the side of the square images the vision tower takes, in pixels.
        patch_size: the side of one patch; ``image_size`` must be a multiple of it.
        **overrides: top-level fields to change or add (``text_config={...}`` replaces the whole text model).

    Returns:
        A dict with ``model_type`` ``llava`` for ``AutoModelForImageTextToText.from_config``.

    Raises:
        ModelError: when the sizes are not positive integers or ``image_size`` is not a multiple of ``patch_size``.
    """
    for name, value in (("image_size", image_size), ("patch_size", patch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ModelError(f"{name} must be a positive integer, got {value!r}.")
    if image_size % patch_size:
        raise ModelError(
            f"image_size {image_size} is not a multiple of patch_size {patch_size}; pick sizes such as 32 and 8."
        )
    return {
        "model_type": "llava",
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": patch_size,
            "projection_dim": 32,
        },
        "text_config": tiny_llama_config(),
        "image_token_index": 4,
        "image_seq_length": (image_size // patch_size) ** 2,
        "vision_feature_layer": -1,
        "vision_feature_select_strategy": "default",
        "tie_word_embeddings": True,
        **overrides,
    }
