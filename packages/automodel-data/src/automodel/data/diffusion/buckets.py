"""Aspect-ratio buckets: which bucket an image goes to, and resizing and cropping it to that bucket."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from automodel.data.errors import DataError

CROPS = ("center", "random")


def normalize_buckets(resolution: int, buckets: Sequence[Sequence[int]] | None) -> list[tuple[int, int]]:
    """Return ``buckets`` checked, as ``(height, width)`` tuples, or ``[(resolution, resolution)]`` when None.

    Raises:
        DataError: a resolution or bucket side that is not a positive integer, a bucket that is
            not a ``[height, width]`` pair, or the same bucket listed twice.
    """
    if not isinstance(resolution, int) or isinstance(resolution, bool) or resolution < 1:
        raise DataError(
            f"resolution must be a positive number of pixels, not {resolution!r}", hint="set e.g. resolution: 512"
        )
    if buckets is None:
        return [(resolution, resolution)]
    checked: list[tuple[int, int]] = []
    for bucket in buckets:
        sides = tuple(bucket) if isinstance(bucket, Sequence) and not isinstance(bucket, str) else ()
        if len(sides) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sides):
            raise DataError(
                f"bucket {bucket!r} is not a [height, width] pair of positive integers",
                hint="list buckets as e.g. [[512, 512], [384, 640], [640, 384]]",
            )
        if sides in checked:
            raise DataError(f"bucket {list(sides)} is listed twice", hint="list each [height, width] once")
        checked.append(sides)
    if not checked:
        raise DataError("buckets is an empty list", hint="list at least one [height, width], or leave it unset (null)")
    return checked


def closest_bucket(width: int, height: int, buckets: Sequence[tuple[int, int]]) -> int:
    """Return the index of the ``(height, width)`` bucket whose aspect ratio is closest to ``width / height``.

    Ratios are compared on a log scale, so 2:1 and 1:2 are equally far from 1:1; a tie goes
    to the bucket listed first.
    """
    ratio = math.log(width / height)
    return min(range(len(buckets)), key=lambda i: abs(math.log(buckets[i][1] / buckets[i][0]) - ratio))


def fit_to_bucket(
    image: Image.Image, bucket: tuple[int, int], *, crop: str, flip: bool, rng: np.random.Generator
) -> tuple[Image.Image, tuple[int, int]]:
    """Resize an image to cover a ``(height, width)`` bucket, keeping its aspect ratio, then flip and crop it.

    Args:
        image: the decoded image.
        bucket: the ``(height, width)`` to produce.
        crop: ``"center"``, or ``"random"`` for an offset drawn from ``rng``.
        flip: mirror the image left to right (before cropping).
        rng: the generator random offsets are drawn from (two draws, whatever ``crop`` is).

    Returns:
        The image of exactly the bucket's size and the ``(top, left)`` of the crop in the
        resized (and flipped) image, the offsets SDXL-style models take as conditioning.
    """
    height, width = bucket
    scale = max(width / image.width, height / image.height)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    resized = image.resize(size, Image.Resampling.BICUBIC) if size != image.size else image
    if flip:
        resized = resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    spare_y, spare_x = size[1] - height, size[0] - width
    draw_y, draw_x = int(rng.integers(0, spare_y + 1)), int(rng.integers(0, spare_x + 1))
    top, left = (draw_y, draw_x) if crop == "random" else (spare_y // 2, spare_x // 2)
    return resized.crop((left, top, left + width, top + height)), (top, left)
