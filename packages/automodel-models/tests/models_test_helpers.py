"""Helpers shared by the automodel.models tests (a unique module name: tests import it from sys.path)."""

from __future__ import annotations

import torch
from PIL import Image

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "In 2024 the team trained 3 models on 1000000 tokens.",
    "Hello world! Hello tokenizer, hello model.",
    "def add(a, b):\n    return a + b",
    "Café, naïve, 東京 and emoji 🙂 are bytes too.",
] * 20


def linear_weight_count(model: torch.nn.Module) -> int:
    """Return the number of weights in the model's Linear layers (a tied LM head counts)."""
    return sum(module.weight.numel() for module in model.modules() if isinstance(module, torch.nn.Linear))


def token_batch(vocab_size: int = 512, batch: int = 2, length: int = 8, seed: int = 0) -> torch.Tensor:
    """Return a fixed batch of random token ids of shape (batch, length)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (batch, length), generator=generator)


def plain_image(size: int = 40, color: tuple[int, int, int] = (200, 30, 30)) -> Image.Image:
    """Return a plain RGB image, ``size`` pixels wide and ``size + 10`` high (not square, so it is cropped)."""
    return Image.new("RGB", (size, size + 10), color)
