"""Reading an image's size from its header, and decoding it upright as RGB."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

# What PIL raises for data that is not a readable image.
UNREADABLE = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)
ORIENTATION_TAG = 0x0112
# EXIF orientation -> the transpose that makes the image upright (as PIL.ImageOps.exif_transpose).
UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
WHITE = (255, 255, 255, 255)


def image_source(value: Any, base_dir: Path | None) -> Path | io.BytesIO | None:
    """Return what to open for an image value, or None when the value names no image.

    A string is a path (relative ones start from ``base_dir``); a `datasets` Image value
    (``{"bytes", "path"}``) gives its bytes, or its path when it has no bytes.
    """
    if isinstance(value, dict):
        if value.get("bytes") is not None:
            return io.BytesIO(value["bytes"])
        value = value.get("path")
    if not isinstance(value, str) or not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() or base_dir is None else base_dir / path


def upright_size(source: Path | io.BytesIO) -> tuple[int, int]:
    """Return the ``(width, height)`` of an image once made upright, reading only its header.

    Raises:
        OSError, ValueError, ...: (``UNREADABLE``) the source is missing or not an image.
    """
    with Image.open(_rewound(source)) as image:
        width, height = image.size
        return (height, width) if _orientation(image) in (5, 6, 7, 8) else (width, height)


def decode_rgb(source: Path | io.BytesIO) -> Image.Image:
    """Decode an image fully, turn it upright by its EXIF orientation and convert it to RGB.

    Transparent pixels (RGBA, LA, palette or grey images with transparency) are laid over white.

    Raises:
        OSError, ValueError, ...: (``UNREADABLE``) the source is missing or not a readable image.
    """
    with Image.open(_rewound(source)) as image:
        image.load()
        transpose = UPRIGHT.get(_orientation(image))
        if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
            rgba = image.convert("RGBA")
            image = Image.alpha_composite(Image.new("RGBA", rgba.size, WHITE), rgba)
        rgb = image.convert("RGB")
    return rgb.transpose(transpose) if transpose is not None else rgb


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation in the image's header (1, upright, when there is none)."""
    raw = image.info.get("exif")
    if not raw:
        return 1
    exif = Image.Exif()
    exif.load(raw)
    return exif.get(ORIENTATION_TAG, 1)


def _rewound(source: Path | io.BytesIO) -> Path | io.BytesIO:
    """The source ready to be read from its start."""
    if isinstance(source, io.BytesIO):
        source.seek(0)
    return source
