"""Test helpers for image-text data: a small LLaVA-style processor and PNG files on disk.

The processor is a ``transformers.LlavaProcessor`` over a byte-level BPE tokenizer with an
``<image>`` token and a ``CLIPImageProcessor`` cropping to 8x8 pixels; with 4-pixel patches,
one CLS token and the ``default`` feature strategy, every image becomes 4 ``<image>`` tokens.
"""

from __future__ import annotations

import functools
from pathlib import Path

from PIL import Image
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import CLIPImageProcessor, LlavaProcessor, PreTrainedTokenizerFast

IMAGE_TOKEN = "<image>"
IMAGE_TOKENS_PER_IMAGE = 4
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|pad|>",
    "<|im_start|>",
    "<|im_end|>",
    "<start_of_turn>",
    "<end_of_turn>",
    IMAGE_TOKEN,
]

# Renders a message's parts: images as <image>, text as it is.
_PARTS = (
    "{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %}{{ '<image>' }}{% else %}{{ part['text'] }}{% endif %}"
    "{% endfor %}"
)

# ChatML with {% generation %} around assistant content and its <|im_end|>.
CHATML_GENERATION_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}" + _PARTS + "{{ '<|im_end|>' }}{% endgeneration %}{{ '\\n' }}"
    "{% else %}" + _PARTS + "{{ '<|im_end|>\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# The same rendering without generation markers, as Qwen2-VL's template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}" + _PARTS + "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Gemma 3's turn layout (the assistant is `model`), without generation markers.
GEMMA_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' }}"
    + _PARTS
    + "{{ '<end_of_turn>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
)

SENTENCES = [
    "What is in the picture? A red square on a white background.",
    "Describe the image. Two blue circles.",
    "You are a helpful assistant. How many shapes are there? There are three.",
]


@functools.cache
def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with ChatML, Gemma turn and ``<image>`` special tokens."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(SENTENCES * 4, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|pad|>")


def build_processor(
    chat_template: str = CHATML_GENERATION_TEMPLATE,
    cls: type = LlavaProcessor,
    tokenizer: PreTrainedTokenizerFast | None = None,
) -> LlavaProcessor:
    """A LLaVA processor (or a subclass ``cls``) with a chat template and tokenizer; images become 4 tokens."""
    image_processor = CLIPImageProcessor(size={"shortest_edge": 8}, crop_size={"height": 8, "width": 8})
    return cls(
        image_processor=image_processor,
        tokenizer=tokenizer or build_tokenizer(),
        patch_size=4,
        num_additional_image_tokens=1,
        vision_feature_select_strategy="default",
        chat_template=chat_template,
    )


def write_png(path: Path, color: tuple[int, int, int] = (255, 0, 0), size: tuple[int, int] = (12, 10)) -> Path:
    """Write a one-colour PNG (creating its folder) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


def image_turn(image: str, question: str) -> dict:
    """A user message with an image part and a text part."""
    return {"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": question}]}


def text_turn(role: str, text: str) -> dict:
    """A message with one text part."""
    return {"role": role, "content": [{"type": "text", "text": text}]}
