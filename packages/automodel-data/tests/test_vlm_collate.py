"""VLM collates: processor tensors passed through, pre-shifted labels on assistant text only, the registry."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from data_test_helpers import label_runs, write_jsonl
from transformers import LlavaProcessor
from vlm_test_helpers import (
    CHATML_TEMPLATE,
    GEMMA_TEMPLATE,
    IMAGE_TOKEN,
    IMAGE_TOKENS_PER_IMAGE,
    build_processor,
    build_tokenizer,
    image_turn,
    text_turn,
    write_png,
)

from automodel.data import DataError, build_dataloader
from automodel.data.vlm import (
    VLM_COLLATES,
    ImageTextChatDataset,
    TurnMarkerCollate,
    collate_for,
    default_vlm_collate,
    register_vlm_collate,
)
from automodel.data.vlm import registry as registry_module

CONVERSATIONS = [
    [
        text_turn("system", "You are a helpful assistant."),
        image_turn("red.png", "What is in the picture?"),
        text_turn("assistant", "A red square."),
    ],
    [
        image_turn("blue.png", "Describe the image."),
        text_turn("assistant", "Two blue circles."),
        image_turn("red.png", "How many shapes are there?"),
        text_turn("assistant", "There are three."),
    ],
]
ANSWERS = [["A red square."], ["Two blue circles.", "There are three."]]


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> list[dict]:
    folder = tmp_path_factory.mktemp("vlm")
    write_png(folder / "red.png", (255, 0, 0))
    write_png(folder / "blue.png", (0, 0, 255))
    dataset = ImageTextChatDataset(write_jsonl(folder / "chat.jsonl", [{"messages": m} for m in CONVERSATIONS]))
    return [dataset[0], dataset[1]]


@pytest.fixture
def registry(monkeypatch) -> dict:
    """The collate registry, restored after the test."""
    monkeypatch.setattr(registry_module, "VLM_COLLATES", dict(VLM_COLLATES))
    return registry_module.VLM_COLLATES


def _decoded_targets(batch: dict, processor) -> list[list[str]]:
    return [[processor.tokenizer.decode(run) for run in label_runs(row.tolist())] for row in batch["labels"]]


@pytest.mark.parametrize("padding_side", ["right", "left"])
def test_the_default_collate_labels_exactly_the_assistant_text_and_end_of_turn(samples, padding_side: str) -> None:
    tokenizer = copy.deepcopy(build_tokenizer())
    tokenizer.padding_side = padding_side
    processor = build_processor(tokenizer=tokenizer)
    batch = default_vlm_collate(samples, processor)
    end = "<|im_end|>"
    assert _decoded_targets(batch, processor) == [[a + end for a in answers] for answers in ANSWERS]


def test_labels_are_pre_shifted_and_never_an_image_token_padding_or_prompt(samples) -> None:
    processor = build_processor()
    batch = default_vlm_collate(samples, processor)
    input_ids, labels = batch["input_ids"], batch["labels"]
    assert labels.shape == input_ids.shape
    targets = labels != -100
    assert torch.equal(labels[:, :-1][targets[:, :-1]], input_ids[:, 1:][targets[:, :-1]])
    assert not targets[:, -1].any()
    assert not (labels == processor.image_token_id).any()
    assert not targets[batch["attention_mask"] == 0].any()
    text = processor.tokenizer.decode(input_ids[0])
    assert text.count(IMAGE_TOKEN) == IMAGE_TOKENS_PER_IMAGE  # images expanded by the processor
    assert "What is in the picture?" not in processor.tokenizer.decode(labels[0][targets[0]])


def test_the_batch_is_the_processors_tensors_plus_labels(samples) -> None:
    batch = default_vlm_collate(samples, build_processor())
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values", "labels"}
    assert batch["pixel_values"].shape == (3, 3, 8, 8)  # one image in the first sample, two in the second
    assert all(isinstance(value, torch.Tensor) for value in batch.values())


@pytest.mark.parametrize(
    ("processor_class", "template", "end"),
    [("Qwen2VLProcessor", CHATML_TEMPLATE, "<|im_end|>"), ("Gemma3Processor", GEMMA_TEMPLATE, "<end_of_turn>")],
)
def test_the_registered_marker_collates_label_assistant_turns_of_templates_without_markers(
    samples, processor_class: str, template: str, end: str
) -> None:
    processor = build_processor(template)
    batch = VLM_COLLATES[processor_class](samples, processor)
    assert _decoded_targets(batch, processor) == [[a + end for a in answers] for answers in ANSWERS]
    assert batch["labels"].shape == batch["input_ids"].shape
    assert not batch["labels"][:, -1].ne(-100).any()


def test_the_default_collate_refuses_a_template_without_generation_markers(samples) -> None:
    with pytest.raises(DataError, match=r"LlavaProcessor has no \{% generation %\} markers.*register_vlm_collate"):
        default_vlm_collate(samples, build_processor(CHATML_TEMPLATE))


def test_a_marker_collate_whose_markers_are_not_in_the_text_is_a_data_error(samples) -> None:
    collate = TurnMarkerCollate("<start_of_turn>model\n", "<end_of_turn>")
    with pytest.raises(DataError, match=r"samples \[0, 1\] of the batch have no assistant token found by"):
        collate(samples, build_processor(CHATML_TEMPLATE))


def test_collate_for_picks_the_collate_registered_for_the_class_or_falls_back_to_the_default(registry) -> None:
    chatml = type("ChatMLProcessor", (LlavaProcessor,), {})
    subclass = type("MyChatMLProcessor", (chatml,), {})
    register_vlm_collate("ChatMLProcessor", VLM_COLLATES["Qwen2VLProcessor"])
    assert collate_for(build_processor()).func is default_vlm_collate
    assert collate_for(build_processor(cls=chatml)).func is VLM_COLLATES["Qwen2VLProcessor"]
    assert collate_for(build_processor(cls=subclass)).func is VLM_COLLATES["Qwen2VLProcessor"]  # inherited


def test_a_registered_collate_serves_a_data_loader_through_collate_for(samples, registry) -> None:
    register_vlm_collate("LlavaProcessor", TurnMarkerCollate("<|im_start|>assistant\n", "<|im_end|>"))
    processor = build_processor(CHATML_TEMPLATE)
    loader = build_dataloader(samples, batch_size=2, collate_fn=collate_for(processor), shuffle=False)
    batch = next(iter(loader))
    assert _decoded_targets(batch, processor) == [[a + "<|im_end|>" for a in answers] for answers in ANSWERS]


def test_a_batch_of_conversations_without_images_has_no_pixel_values(tmp_path: Path) -> None:
    path = write_jsonl(
        tmp_path / "text.jsonl", [{"messages": [text_turn("user", "Hi"), text_turn("assistant", "Hello.")]}]
    )
    batch = default_vlm_collate([ImageTextChatDataset(path)[0]], build_processor())
    assert "pixel_values" not in batch
    assert _decoded_targets(batch, build_processor()) == [["Hello.<|im_end|>"]]
