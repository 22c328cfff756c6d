"""Opening the images a conversation refers to: local paths, http(s) URLs and `datasets` Image values."""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from automodel.data.errors import DataError

PathOrId = str | os.PathLike[str]
OFFLINE_VALUES = {"1", "ON", "YES", "TRUE"}
URL_TIMEOUT_S = 60


class ImageReadError(DataError):
    """An image that is missing or cannot be decoded: the kind of bad sample ``skip_bad_samples`` skips."""


def image_base(path_or_dataset_id: PathOrId | Sequence[PathOrId], image_root: PathOrId | None) -> Path | None:
    """Return the folder relative image paths start from.

    That is ``image_root`` when given, else the folder of a local data file (the directory
    itself for a directory, the shared folder of a list of files), else None (a hub id, or
    files in different folders), where a relative image path is an error.
    """
    if image_root is not None:
        return Path(image_root).expanduser()
    paths = [path_or_dataset_id] if isinstance(path_or_dataset_id, (str, os.PathLike)) else list(path_or_dataset_id)
    folders = set()
    for path in (Path(p).expanduser() for p in paths):
        if path.is_dir():
            folders.add(path.resolve())
        elif path.is_file():
            folders.add(path.resolve().parent)
        else:
            return None
    return folders.pop() if len(folders) == 1 else None


def is_url(value: Any) -> bool:
    """Whether an image reference is an http(s) URL."""
    return isinstance(value, str) and value.startswith(("http://", "https://"))


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` forbids the network (read at each call, as the Hugging Face libraries do)."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in OFFLINE_VALUES


def open_image(value: Any, *, base_dir: Path | None, row: int, dataset: str) -> Image.Image:
    """Open and decode one image as RGB.

    Args:
        value: a local path (relative to ``base_dir``), an http(s) URL, or a `datasets`
            Image value (``{"bytes": ..., "path": ...}``).
        base_dir: the folder relative paths start from, or None when there is none.
        row: the row index, for errors.
        dataset: the dataset's name, for errors.

    Returns:
        The decoded image in RGB mode.

    Raises:
        DataError: a URL while ``HF_HUB_OFFLINE`` is set, a relative path with no folder to
            start from, or a value that is not an image reference.
        ImageReadError: a missing file, an unreachable URL or data that is not a readable image.
    """
    if isinstance(value, dict) and value.get("bytes") is not None:
        label = f"the image bytes of {value.get('path') or 'an Image value'}"
        return _decode(io.BytesIO(value["bytes"]), label, row, dataset)
    if isinstance(value, dict) and value.get("path"):
        value = value["path"]
    if is_url(value):
        return _decode(_fetch(value, row, dataset), value, row, dataset)
    if not isinstance(value, str) or not value:
        raise DataError(
            f"row {row}: an image part holds {type(value).__name__} {value!r:.60}, not a path, URL or Image value",
            dataset=dataset,
            hint="give each image as a file path, an http(s) URL or a `datasets` Image value",
        )
    path = Path(value).expanduser()
    if not path.is_absolute():
        if base_dir is None:
            raise DataError(
                f"row {row}: the relative image path {value} has no folder to start from",
                dataset=dataset,
                hint="pass image_root= the folder that holds the images",
            )
        path = base_dir / path
    if not path.is_file():
        raise ImageReadError(
            f"row {row}: image file {path} does not exist",
            dataset=dataset,
            hint="check the path (relative paths start from the data file's folder or image_root), "
            "or pass skip_bad_samples=True to skip such rows",
        )
    return _decode(path, str(path), row, dataset)


def _decode(source: Path | io.BytesIO, label: str, row: int, dataset: str) -> Image.Image:
    """Decode an image fully (so corrupt data fails here, not in the processor) and convert it to RGB."""
    try:
        with Image.open(source) as image:
            image.load()
            return image.convert("RGB")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise ImageReadError(
            f"row {row}: image {label} cannot be read: {error}",
            dataset=dataset,
            hint="replace or remove the file, or pass skip_bad_samples=True to skip such rows",
        ) from error


def _fetch(url: str, row: int, dataset: str) -> io.BytesIO:
    """Download an image, refusing to while the hub is offline."""
    if hub_offline():
        raise DataError(
            f"row {row}: image {url} is a URL, and HF_HUB_OFFLINE is set",
            dataset=dataset,
            hint="download the images and point the rows at the local files, or unset HF_HUB_OFFLINE",
        )
    try:
        with urllib.request.urlopen(url, timeout=URL_TIMEOUT_S) as response:
            return io.BytesIO(response.read())
    except (urllib.error.URLError, OSError) as error:
        raise ImageReadError(
            f"row {row}: image {url} could not be downloaded: {error}",
            dataset=dataset,
            hint="check the URL and the network, or pass skip_bad_samples=True to skip such rows",
        ) from error
