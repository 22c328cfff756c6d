"""The automatic check of the tiny text-to-image example: which colour and which shape an image shows.

    python examples/data/t2i_shapes_check.py IMAGE.png ...   # prints colour and shape of each
    python examples/data/t2i_shapes_check.py runs/tiny_t2i/samples/step_001000   # accuracy vs prompts.json

The colour is the palette colour nearest to the mean of the pixels that are far from the
white background; the shape follows from which corners of those pixels' bounding box they fill
(a square all four, a triangle the bottom two, a circle none).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 160, 40), "blue": (30, 60, 220), "yellow": (240, 200, 0)}
SHAPES = ("square", "circle", "triangle")
SPECK = 3  # a row or column with fewer foreground pixels than this is a stray speck, not the shape


def classify(image: np.ndarray) -> tuple[str, str]:
    """Return ``(colour, shape)`` of an RGB image ([H, W, 3], uint8 or floats in [0, 1])."""
    pixels = np.asarray(image, dtype=np.float64)
    if pixels.max() <= 1.0:
        pixels = pixels * 255
    foreground = np.abs(pixels - 255).sum(axis=-1) > 120
    if not foreground.any():
        return "none", "none"
    mean = pixels[foreground].mean(axis=0)
    colour = min(COLOURS, key=lambda name: float(np.sum((mean - np.array(COLOURS[name])) ** 2)))
    return colour, _shape(foreground)


def _shape(foreground: np.ndarray) -> str:
    """The shape of a foreground mask, from how full the corners of its bounding box are.

    A square fills its top corners, a triangle (apex up) only its bottom ones, a circle none.
    """
    rows = np.nonzero(foreground.sum(axis=1) >= SPECK)[0]
    cols = np.nonzero(foreground.sum(axis=0) >= SPECK)[0]
    if len(rows) < 2 or len(cols) < 2:
        return "none"
    box = foreground[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    side = max(1, round(min(box.shape) / 5))
    top = (box[:side, :side].mean() + box[:side, -side:].mean()) / 2
    bottom = (box[-side:, :side].mean() + box[-side:, -side:].mean()) / 2
    if top > 0.5:
        return "square"
    return "triangle" if bottom > 0.5 else "circle"


def accuracy(images: list[np.ndarray], captions: list[str]) -> dict[str, float]:
    """Return the fractions of ``images`` whose colour and whose shape are the ones their caption names."""
    colour_right = shape_right = 0
    for image, caption in zip(images, captions, strict=True):
        colour, shape = classify(image)
        colour_right += colour in caption.split()
        shape_right += shape in caption.split()
    count = max(1, len(images))
    return {"colour_accuracy": colour_right / count, "shape_accuracy": shape_right / count}


def score_samples(folder: Path) -> dict[str, float]:
    """Return the colour and shape accuracy of a samples folder (``NNN.png`` and ``prompts.json``)."""
    prompts = json.loads((folder / "prompts.json").read_text(encoding="utf-8"))["prompts"]
    images = [np.asarray(Image.open(folder / f"{i:03d}.png").convert("RGB")) for i in range(len(prompts))]
    return accuracy(images, prompts)


if __name__ == "__main__":
    for argument in sys.argv[1:]:
        path = Path(argument)
        if path.is_dir():
            scores = score_samples(path)
            print(path, " ".join(f"{name}={value:.3f}" for name, value in scores.items()))
        else:
            print(path, *classify(np.asarray(Image.open(path).convert("RGB"))))
