"""build_tiny_vlm, CHATML_VLM_TEMPLATE and the vlm_builder command line: a tiny Llava plain transformers loads."""

from __future__ import annotations

import json

import jinja2
import pytest
import torch
import transformers
from models_test_helpers import plain_image

from automodel.models import (
    CHATML_VLM_TEMPLATE,
    IMAGE_TOKEN,
    AutoModelForImageTextToText,
    ModelError,
    tiny_vlm_config,
)
from automodel.models.vlm_builder import main

IMAGE_TOKENS_PER_IMAGE = 16  # (32 // 8) ** 2

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What color is it?"}]},
    {"role": "assistant", "content": [{"type": "text", "text": "Red."}]},
    {"role": "user", "content": "Sure?"},
    {"role": "assistant", "content": "Yes, red."},
]

RENDERED = (
    "<|im_start|>system\nBe brief.<|im_end|>\n"
    "<|im_start|>user\n<image>What color is it?<|im_end|>\n"
    "<|im_start|>assistant\nRed.<|im_end|>\n"
    "<|im_start|>user\nSure?<|im_end|>\n"
    "<|im_start|>assistant\nYes, red.<|im_end|>\n"
)


@pytest.fixture(scope="module")
def processor(tiny_vlm_dir):
    """The tiny VLM's processor, loaded by plain transformers (no automodel code)."""
    return transformers.AutoProcessor.from_pretrained(tiny_vlm_dir)


@pytest.fixture(scope="module")
def model(tiny_vlm_dir):
    """The tiny VLM, loaded by plain transformers (no automodel code)."""
    return transformers.AutoModelForImageTextToText.from_pretrained(tiny_vlm_dir)


def test_plain_transformers_loads_a_llava_with_a_clip_tower_and_its_processor(tiny_vlm_dir, model, processor):
    assert isinstance(model, transformers.LlavaForConditionalGeneration)
    assert model.config.vision_config.model_type == "clip_vision_model"
    assert model.config.text_config.model_type == "llama"
    assert isinstance(processor, transformers.LlavaProcessor)
    assert processor.chat_template == processor.tokenizer.chat_template == CHATML_VLM_TEMPLATE
    assert (tiny_vlm_dir / "model.safetensors").stat().st_size < 1_000_000


def test_a_templated_conversation_with_an_image_gives_logits_for_every_token(model, processor):
    text = processor.apply_chat_template(CONVERSATION[:2], tokenize=False, add_generation_prompt=True)
    inputs = processor(text=[text], images=[plain_image()], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits
    assert inputs["pixel_values"].shape == (1, 3, 32, 32)
    assert (inputs["input_ids"] == model.config.image_token_id).sum() == IMAGE_TOKENS_PER_IMAGE
    assert logits.shape == (1, inputs["input_ids"].shape[1], model.config.text_config.vocab_size)
    assert torch.isfinite(logits).all()


def test_token_ids_agree_between_tokenizer_model_config_and_generation_config(model, processor):
    tokenizer, config = processor.tokenizer, model.config
    assert tokenizer.convert_tokens_to_ids(IMAGE_TOKEN) == processor.image_token_id == config.image_token_id == 4
    assert tokenizer(f"a{IMAGE_TOKEN}b").input_ids.count(4) == 1
    assert tokenizer.bos_token_id == config.text_config.bos_token_id == model.generation_config.bos_token_id == 0
    assert tokenizer.eos_token_id == config.text_config.eos_token_id == model.generation_config.eos_token_id == 0
    assert tokenizer.pad_token_id == config.text_config.pad_token_id == model.generation_config.pad_token_id == 1
    assert len(tokenizer) <= config.text_config.vocab_size
    assert config.image_seq_length == IMAGE_TOKENS_PER_IMAGE


def test_the_written_config_is_tiny_vlm_config(tiny_vlm_dir):
    written = json.loads((tiny_vlm_dir / "config.json").read_text(encoding="utf-8"))
    expected = tiny_vlm_config()
    for name in ("model_type", "image_token_index", "image_seq_length", "vision_feature_layer"):
        assert written[name] == expected[name], name
    for part in ("vision_config", "text_config"):
        assert {k: written[part][k] for k in expected[part]} == expected[part], part


def test_the_written_weights_are_those_of_the_same_seed(tiny_vlm_dir, model):
    again = AutoModelForImageTextToText.from_config(tiny_vlm_config(), seed=0)
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_chat_template_renders_image_parts_as_the_image_token_and_the_generation_prompt(processor):
    assert processor.apply_chat_template(CONVERSATION, tokenize=False) == RENDERED
    parts = [
        {"type": "image", "image": plain_image()},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        {"type": "text", "text": "Same?"},
    ]
    text = processor.tokenizer.apply_chat_template(
        [{"role": "user", "content": parts}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\n<image><image>Same?<|im_end|>\n<|im_start|>assistant\n"


def test_assistant_mask_covers_exactly_the_assistant_turns_with_an_image_in_the_prompt(processor):
    conversation = [{**turn} for turn in CONVERSATION]
    conversation[1] = {
        "role": "user",
        "content": [{"type": "image", "image": plain_image()}, CONVERSATION[1]["content"][1]],
    }
    out = processor.apply_chat_template(
        conversation, tokenize=True, return_dict=True, return_assistant_tokens_mask=True, return_tensors="pt"
    )
    ids, mask = out["input_ids"][0], torch.as_tensor(out["assistant_masks"][0]).bool()
    assert out["pixel_values"].shape == (1, 3, 32, 32)
    assert (ids == processor.image_token_id).sum() == IMAGE_TOKENS_PER_IMAGE
    assert processor.tokenizer.decode(ids[mask]) == "Red.<|im_end|>Yes, red.<|im_end|>"


def test_a_content_part_of_another_type_is_refused(processor):
    conversation = [{"role": "user", "content": [{"type": "video"}]}]
    with pytest.raises(jinja2.TemplateError, match="content part type video is not text, image or image_url"):
        processor.tokenizer.apply_chat_template(conversation, tokenize=False)


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ({"image_size": 30}, "image_size 30 is not a multiple of patch_size 8"),
        ({"patch_size": 0}, "patch_size must be a positive integer, got 0"),
    ],
)
def test_image_sizes_that_do_not_make_whole_patches_are_refused(sizes, expected):
    with pytest.raises(ModelError, match=expected):
        tiny_vlm_config(**sizes)


def test_command_line_writes_a_vlm_whose_tokenizer_learned_from_the_text_files(tmp_path, capsys):
    (tmp_path / "captions.txt").write_text("zebra zebra zebra\nzebra crossing\n", encoding="utf-8")
    out = tmp_path / "vlm"
    status = main(["--out", str(out), "--text", str(tmp_path / "captions.txt"), "--image-size", "16", "--seed", "1"])
    assert status == 0
    assert f"to {out}" in capsys.readouterr().out
    processor = transformers.AutoProcessor.from_pretrained(out)
    assert "zebra" in processor.tokenizer.get_vocab() or "Ġzebra" in processor.tokenizer.get_vocab()
    inputs = processor(text=[IMAGE_TOKEN], images=[plain_image()], return_tensors="pt")
    assert inputs["input_ids"].shape == (1, 4)


def test_command_line_reports_bad_sizes_in_one_line_with_status_2(tmp_path, capsys):
    status = main(["--out", str(tmp_path / "vlm"), "--image-size", "30"])
    error = capsys.readouterr().err
    assert status == 2
    assert "image_size 30 is not a multiple of patch_size 8" in error
    assert error.count("\n") == 1
    assert not (tmp_path / "vlm").exists()
