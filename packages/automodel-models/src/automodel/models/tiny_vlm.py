"""build_tiny_vlm: write a tiny Llava model with its processor, offline, for tests and examples.

The command line for it is ``python -m automodel.models.vlm_builder``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from transformers import LlavaProcessor

from automodel.models.auto_model import AutoModelForImageTextToText
from automodel.models.chat_template import CHATML_VLM_TEMPLATE, IMAGE_TOKEN
from automodel.models.tiny_configs import tiny_vlm_config
from automodel.models.tokenizer_training import build_tokenizer

# What the tokenizer learns its merges from when no texts are given.
DEFAULT_TOKENIZER_TEXTS = (
    "A red square on a white background.",
    "What is in the picture? Describe the image in one sentence.",
    "The photo shows 2 cats and 1 dog sitting on a blue sofa.",
    "There is a small green circle in the top left corner.",
    "Yes. No. The answer is the color of the largest shape.",
)


def build_tiny_vlm(
    save_dir: str | os.PathLike,
    *,
    tokenizer_texts: Iterable[str] | None = None,
    image_size: int = 32,
    patch_size: int = 8,
    seed: int = 0,
) -> Path:
    """Write a tiny Llava (CLIP vision tower, Llama text model) and its processor into ``save_dir``.

    What it writes loads with ``transformers.AutoModelForImageTextToText.from_pretrained`` and
    ``transformers.AutoProcessor.from_pretrained`` alone: the fp32 weights (about 0.5 MB) with
    their config (``tiny_vlm_config``) and generation config, and a ``LlavaProcessor``. That is a
    CLIP image processor (saved as ``CLIPImageProcessor``; transformers loads its PIL backend where
    torchvision is missing) and a ``build_tokenizer`` tokenizer (vocabulary of at most 512) with
    the special token ``<image>`` (id 4) and ``CHATML_VLM_TEMPLATE``. The processor expands each
    ``<image>`` in the text to ``(image_size // patch_size) ** 2`` copies (16 by default).

    Args:
        save_dir: the directory to write (created if needed).
        tokenizer_texts: documents the tokenizer learns its merges from (default:
            ``DEFAULT_TOKENIZER_TEXTS``); any text encodes whatever they are.
        image_size: the side, in pixels, images are resized and center-cropped to.
        patch_size: the side of one vision patch; ``image_size`` must be a multiple of it.
        seed: the initial weights depend only on it.

    Returns:
        ``save_dir`` as a ``Path``.

    Raises:
        ModelError: when the sizes are not positive integers or ``image_size`` is not a multiple of ``patch_size``.
    """
    config = tiny_vlm_config(image_size=image_size, patch_size=patch_size)
    save_dir = Path(save_dir)
    texts = DEFAULT_TOKENIZER_TEXTS if tokenizer_texts is None else tokenizer_texts
    tokenizer = build_tokenizer(texts, save_dir, chat_template=CHATML_VLM_TEMPLATE, extra_special_tokens=[IMAGE_TOKEN])
    processor = LlavaProcessor(
        image_processor=_clip_image_processor(image_size),
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy=config["vision_feature_select_strategy"],
        num_additional_image_tokens=1,  # CLIP's class token, which the "default" strategy drops again
        chat_template=CHATML_VLM_TEMPLATE,
        image_token=IMAGE_TOKEN,
    )
    model = AutoModelForImageTextToText.from_config(config, torch_dtype=torch.float32, seed=seed)
    model.save_pretrained(save_dir)
    processor.save_pretrained(save_dir)
    return save_dir


def _clip_image_processor(image_size: int) -> Any:
    """Return CLIP's image processor on its PIL backend (no torchvision), resizing and cropping to ``image_size``."""
    try:
        from transformers import CLIPImageProcessorPil as processor_class  # transformers 5
    except ImportError:
        from transformers import CLIPImageProcessor as processor_class  # transformers 4: PIL and numpy
    return processor_class(size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size})
