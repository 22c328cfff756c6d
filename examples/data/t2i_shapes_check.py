"""The automatic check of the tiny text-to-image example: which colour and which shape an image shows.

    python examples/data/t2i_shapes_check.py IMAGE.png ...   # prints colour and shape of each

The colour is the palette colour nearest to the mean of the pixels that are far from the
white background; the shape follows from how much of the shape's bounding box those pixels
fill (a square about 1, a circle about pi/4, a triangle about 1/2).
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 160, 40), "blue": (30, 60, 220), "yellow": (240, 200, 0)}
SHAPES = ("square", "circle", "triangle")
FILL = {"square": 1.0, "circle": np.pi / 4, "triangle": 0.5}


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
    rows, cols = np.nonzero(foreground)
    box = (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)
    fill = foreground.sum() / box
    shape = min(FILL, key=lambda name: abs(fill - FILL[name]))
    return colour, shape


def accuracy(images: list[np.ndarray], captions: list[str]) -> dict[str, float]:
    """Return the fractions of ``images`` whose colour and whose shape are the ones their caption names."""
    colour_right = shape_right = 0
    for image, caption in zip(images, captions, strict=True):
        colour, shape = classify(image)
        colour_right += colour in caption.split()
        shape_right += shape in caption.split()
    count = max(1, len(images))
    return {"colour_accuracy": colour_right / count, "shape_accuracy": shape_right / count}


if __name__ == "__main__":
    for path in sys.argv[1:]:
        print(path, *classify(np.asarray(Image.open(path).convert("RGB"))))
