"""train_step on an image-text batch: the images reach the model, and the loss learns from them."""

from __future__ import annotations

import pytest
import torch
from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

from automodel.training import ChunkedCrossEntropy, MaskedCrossEntropy, TrainingError, forward_loss, train_step

IMAGE_TOKEN, PATCHES = 5, 16  # a 32-pixel image in 8-pixel patches: 16 image tokens


def tiny_llava() -> LlavaForConditionalGeneration:
    """A Llava with a 2-layer CLIP tower and a 2-layer Llama, small enough to train in a second."""
    torch.manual_seed(0)
    vision = CLIPVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    text = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_index=IMAGE_TOKEN)
    return LlavaForConditionalGeneration(config)


def colour_batch(colours: list[int]) -> dict[str, torch.Tensor]:
    """One row per image: the image tokens, then the answer token; image c is red, green, blue or white."""
    pixels = -torch.ones(len(colours), 3, 32, 32)
    for row, c in enumerate(colours):
        pixels[row, c if c < 3 else slice(None)] = 1.0
    answers = torch.tensor([[10 + c] for c in colours])
    input_ids = torch.cat([torch.full((len(colours), PATCHES), IMAGE_TOKEN), answers], dim=1)
    labels = torch.full_like(input_ids, -100)
    labels[:, -2] = answers[:, 0]  # pre-shifted: the last image position predicts the answer
    return {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "labels": labels,
        "pixel_values": pixels,
    }


def test_the_answer_only_the_image_holds_is_learned():
    model = tiny_llava()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = colour_batch([0, 1, 2, 3])
    losses = [train_step(model, [batch], MaskedCrossEntropy(), optimizer).loss for _ in range(60)]
    assert losses[-1] < 0.1 * losses[0]
    with torch.no_grad():
        predicted = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, -2].argmax(-1)
    assert predicted.tolist() == [10, 11, 12, 13]  # the text alone is the same in every row


def test_a_hidden_state_loss_is_refused_for_image_batches():
    with pytest.raises(TrainingError, match=r"skips the images .*MaskedCrossEntropy"):
        forward_loss(tiny_llava(), colour_batch([0]), ChunkedCrossEntropy())
