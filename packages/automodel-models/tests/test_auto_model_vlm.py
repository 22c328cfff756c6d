"""AutoModelForImageTextToText: tiny Llava, Qwen2-VL, Qwen2.5-VL and Gemma 3 from configs, loading, and user errors."""

from __future__ import annotations

import re

import pytest
import torch
import transformers

from automodel.models import (
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    ModelError,
    tiny_llama_config,
    tiny_vlm_config,
)

TEXT = {"vocab_size": 128, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
HEADS = {"num_attention_heads": 4, "num_key_value_heads": 2, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0}
QWEN_TEXT = {
    **TEXT,
    **HEADS,
    "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
}
QWEN_VISION = {
    "depth": 2,
    "embed_dim": 32,
    "hidden_size": 64,
    "num_heads": 2,
    "patch_size": 4,
    "temporal_patch_size": 2,
}
QWEN_IDS = {"image_token_id": 100, "video_token_id": 101, "vision_start_token_id": 102, "vision_end_token_id": 103}


def _llava_inputs(config: transformers.PretrainedConfig) -> dict[str, torch.Tensor]:
    """One 32x32 image (16 image tokens) between text tokens."""
    ids = torch.tensor([[5, 6, *[config.image_token_id] * 16, 7, 8]])
    return {"input_ids": ids, "pixel_values": torch.randn(1, 3, 32, 32)}


def _qwen_inputs(config: transformers.PretrainedConfig) -> dict[str, torch.Tensor]:
    """One image of 4x4 patches of 4 pixels, merged 2x2 into 4 image tokens, between vision start and end."""
    image = [config.vision_start_token_id, *[config.image_token_id] * 4, config.vision_end_token_id]
    ids = torch.tensor([[5, *image, 6]])
    patches = torch.randn(16, 3 * 2 * 4 * 4)  # channels x temporal patch x patch x patch
    mm_types = (ids == config.image_token_id).long()
    return {
        "input_ids": ids,
        "pixel_values": patches,
        "image_grid_thw": torch.tensor([[1, 4, 4]]),
        "mm_token_type_ids": mm_types,
    }


def _gemma3_inputs(config: transformers.PretrainedConfig) -> dict[str, torch.Tensor]:
    """One 16x16 image pooled to 4 image tokens between begin- and end-of-image tokens."""
    image = [config.boi_token_index, *[config.image_token_index] * 4, config.eoi_token_index]
    ids = torch.tensor([[2, 5, *image, 6]])
    token_types = (ids == config.image_token_index).long()
    return {"input_ids": ids, "pixel_values": torch.randn(1, 3, 16, 16), "token_type_ids": token_types}


CASES = {
    "llava": (tiny_vlm_config(), _llava_inputs, "LlavaForConditionalGeneration"),
    "qwen2_vl": (
        {
            "model_type": "qwen2_vl",
            "text_config": {"model_type": "qwen2_vl_text", **QWEN_TEXT},
            "vision_config": {**QWEN_VISION, "mlp_ratio": 2},
            **QWEN_IDS,
        },
        _qwen_inputs,
        "Qwen2VLForConditionalGeneration",
    ),
    "qwen2_5_vl": (
        {
            "model_type": "qwen2_5_vl",
            "text_config": {"model_type": "qwen2_5_vl_text", **QWEN_TEXT},
            "vision_config": {
                **QWEN_VISION,
                "intermediate_size": 64,
                "out_hidden_size": 64,
                "fullatt_block_indexes": [1],
                "window_size": 16,
            },
            **QWEN_IDS,
        },
        _qwen_inputs,
        "Qwen2_5_VLForConditionalGeneration",
    ),
    "gemma3": (
        {
            "model_type": "gemma3",
            "text_config": {"model_type": "gemma3_text", **TEXT, **HEADS, "head_dim": 16, "sliding_window": 16},
            "vision_config": {
                "model_type": "siglip_vision_model",
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "image_size": 16,
                "patch_size": 4,
                "vision_use_head": False,
            },
            "mm_tokens_per_image": 4,
            "image_token_index": 100,
            "boi_token_index": 101,
            "eoi_token_index": 102,
        },
        _gemma3_inputs,
        "Gemma3ForConditionalGeneration",
    ),
}


# Llava uses CLIP's patch features, never the pooled output that post_layernorm normalizes.
NO_GRADIENT = {"llava": ["model.vision_tower.post_layernorm.weight", "model.vision_tower.post_layernorm.bias"]}


@pytest.mark.parametrize("name", CASES)
def test_from_config_builds_an_sdpa_fp32_model_whose_forward_with_an_image_gives_a_loss(name):
    config, inputs_for, class_name = CASES[name]
    model = AutoModelForImageTextToText.from_config(config, seed=0)
    inputs = inputs_for(model.config)
    out = model(**inputs, labels=inputs["input_ids"])
    assert type(model).__name__ == class_name
    assert model.config._attn_implementation == "sdpa"
    assert model.dtype == torch.float32
    assert out.logits.shape == (*inputs["input_ids"].shape, model.config.text_config.vocab_size)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert [key for key, p in model.named_parameters() if p.grad is None] == NO_GRADIENT.get(name, [])


def test_same_seed_gives_the_same_weights_and_leaves_the_global_rng_alone():
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    first = AutoModelForImageTextToText.from_config(tiny_vlm_config(), seed=3)
    second = AutoModelForImageTextToText.from_config(tiny_vlm_config(), seed=3)
    other = AutoModelForImageTextToText.from_config(tiny_vlm_config(), seed=4)
    assert torch.equal(torch.rand(3), expected_next)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(
        first.model.multi_modal_projector.linear_1.weight, other.model.multi_modal_projector.linear_1.weight
    )


def test_from_pretrained_loads_the_tiny_vlm_in_the_dtype_asked_for(tiny_vlm_dir):
    model = AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)
    assert model.dtype == torch.float32
    assert model.config._attn_implementation == "sdpa"
    half = AutoModelForImageTextToText.from_pretrained(
        str(tiny_vlm_dir), torch_dtype="bf16", attn_implementation="eager"
    )
    assert half.dtype == torch.bfloat16
    assert half.config._attn_implementation == "eager"


def test_from_config_applies_overrides():
    model = AutoModelForImageTextToText.from_config(tiny_vlm_config(), vision_feature_layer=-2)
    assert model.config.vision_feature_layer == -2


def test_model_type_without_an_image_text_to_text_class_names_the_closest():
    expected = (
        r"model_type `llama` has no image-text-to-text class \(transformers .*\); "
        r"the closest image-text-to-text types are .*`llava`"
    )
    with pytest.raises(ModelError, match=expected):
        AutoModelForImageTextToText.from_config(tiny_llama_config())


def test_unknown_model_type_names_the_closest_known_types():
    with pytest.raises(ModelError, match=r"model_type `lava` in the config dict is not a model type .*`llava`"):
        AutoModelForImageTextToText.from_config(tiny_vlm_config(model_type="lava"))


def test_from_pretrained_of_a_causal_lm_checkpoint_says_it_has_no_image_text_to_text_class(tmp_path):
    AutoModelForCausalLM.from_config(tiny_llama_config(), seed=0).save_pretrained(tmp_path)
    with pytest.raises(ModelError, match=r"model_type `llama` has no image-text-to-text class"):
        AutoModelForImageTextToText.from_pretrained(tmp_path)


def test_from_pretrained_of_a_vlm_checkpoint_as_a_causal_lm_says_it_has_no_causal_lm_class(tiny_vlm_dir):
    with pytest.raises(ModelError, match=r"model_type `llava` has no causal-LM class"):
        AutoModelForCausalLM.from_pretrained(tiny_vlm_dir)


def test_missing_local_model_directory_is_named(tmp_path):
    missing = tmp_path / "no-vlm"
    with pytest.raises(ModelError, match=re.escape(f"local path {missing} does not exist; check the path")):
        AutoModelForImageTextToText.from_pretrained(str(missing))


def test_uncached_hub_id_offline_mentions_hf_hub_offline():
    with pytest.raises(ModelError, match=r"model `automodel-tests/no-such-vlm`.*HF_HUB_OFFLINE=1"):
        AutoModelForImageTextToText.from_pretrained("automodel-tests/no-such-vlm")
