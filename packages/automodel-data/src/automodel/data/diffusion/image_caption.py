"""Image-caption pairs for text-to-image training, each image resized and cropped to its aspect-ratio bucket.

Construction reads every row once: it checks the caption and reads the image's size from
its header (no pixels are decoded), which picks the image's bucket. ``__getitem__`` decodes
the image, so no pixels stay in memory.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from automodel.data.diffusion.buckets import CROPS, closest_bucket, fit_to_bucket, normalize_buckets
from automodel.data.diffusion.images import UNREADABLE, decode_rgb, image_source, upright_size
from automodel.data.diffusion.metadata import load_caption_rows
from automodel.data.errors import DataError, dataset_label

logger = logging.getLogger(__name__)

SKIPPED_EXAMPLES = 5
SKIP_HINT = "fix or remove the row, or set skip_bad_samples: true to leave such rows out"


class ImageCaptionDataset(Dataset):
    """Images and captions; items are ``{"index", "pixel_values", "caption", "original_size", "crop_top_left"}``.

    ``pixel_values`` is a float32 tensor ``[3, height, width]`` in [-1, 1] of the image's
    bucket: the image is made upright (EXIF orientation), laid over white where transparent,
    converted to RGB, resized (bicubic) to cover the bucket keeping its aspect ratio,
    mirrored with probability ``random_flip`` and cropped to the bucket. The flip and a
    random crop are drawn from ``numpy.random.SeedSequence([seed, index])``, so a sample is
    the same on every rank, run and epoch. ``original_size`` is the upright image's
    ``(height, width)`` and ``crop_top_left`` the ``(top, left)`` of the crop in the resized
    image (SDXL's size and crop conditioning).

    Attributes:
        name: the dataset's path or hub id.
        buckets: the ``(height, width)`` buckets.
        bucket_ids: each sample's bucket (an index into ``buckets``); ``build_dataloader``
            batches samples of one bucket together.
        captions: each sample's caption.
        skipped: rows left out by ``skip_bad_samples``.
        skipped_examples: why the first few of them were left out.
    """

    def __init__(
        self,
        path_or_dataset_id: str | os.PathLike[str],
        *,
        image_column: str = "file_name",
        caption_column: str = "text",
        split: str = "train",
        resolution: int = 32,
        buckets: Sequence[Sequence[int]] | None = None,
        crop: str = "center",
        random_flip: float = 0.0,
        skip_bad_samples: bool = False,
        seed: int = 0,
        limit: int | None = None,
    ) -> None:
        """Read the rows, check every caption and image header, and assign each image its bucket.

        Args:
            path_or_dataset_id: a folder holding images and a ``metadata.jsonl`` (or
                ``metadata.csv``) whose rows name an image file relative to the folder and
                carry its caption; otherwise a data file, ``save_to_disk`` folder or hub id
                read by ``load_hf_dataset`` (its image column a path or a `datasets` Image).
            image_column: the column naming each image (hub datasets usually call it ``image``).
            caption_column: the column holding each caption.
            split: the split (an image folder has only ``train``).
            resolution: the side of the one square bucket used when ``buckets`` is None.
            buckets: ``[height, width]`` pairs; each image goes to the one whose aspect ratio
                is closest to its own.
            crop: ``center`` or ``random``.
            random_flip: the probability of mirroring an image left to right.
            skip_bad_samples: leave out rows with no caption or no readable image, counting
                them in ``skipped``, instead of raising.
            seed: the seed of random crops and flips.
            limit: read only the first ``limit`` rows.

        Raises:
            DataError: a missing metadata file or column, a bad ``crop``, ``random_flip``,
                ``resolution`` or bucket, a row without a caption or a readable image
                (unless skipped; the message names the file and line), or no row left.
        """
        self.name = dataset_label(path_or_dataset_id)
        if crop not in CROPS:
            raise DataError(f"crop must be one of {', '.join(CROPS)}, not {crop!r}", dataset=self.name)
        if not 0.0 <= random_flip <= 1.0:
            raise DataError(f"random_flip is a probability between 0 and 1, not {random_flip!r}", dataset=self.name)
        self.buckets = normalize_buckets(resolution, buckets)
        self._crop = crop
        self._random_flip = random_flip
        self._seed = seed
        self._image_column = image_column
        self._rows = load_caption_rows(
            path_or_dataset_id,
            image_column=image_column,
            caption_column=caption_column,
            split=split,
            limit=limit,
            name=self.name,
        )
        self.skipped = 0
        self.skipped_examples: list[str] = []
        self._positions: list[int] = []
        self.captions: list[str] = []
        self.bucket_ids: list[int] = []
        self._check_rows(caption_column, skip_bad_samples)

    def __len__(self) -> int:
        return len(self._positions)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return sample ``index``: its image decoded, fitted to its bucket and scaled to [-1, 1], and its caption.

        Raises:
            DataError: the image passed the header check but cannot be decoded (naming the file and row).
        """
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} samples")
        position = self._positions[index]
        value = self._rows.rows[position][self._image_column]
        try:
            image = decode_rgb(image_source(value, self._rows.base_dir))
        except UNREADABLE as error:
            raise DataError(
                f"{self._rows.where(position)}: image {self._label(value)} cannot be decoded: {error}",
                dataset=self.name,
                hint="replace or remove the file (its header was readable when the dataset was built, "
                "so skip_bad_samples could not leave it out)",
            ) from error
        rng = np.random.default_rng(np.random.SeedSequence([self._seed, index]))
        flip = bool(rng.random() < self._random_flip)
        bucket = self.buckets[self.bucket_ids[index]]
        fitted, crop_top_left = fit_to_bucket(image, bucket, crop=self._crop, flip=flip, rng=rng)
        pixels = torch.from_numpy(np.array(fitted, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        return {
            "index": index,
            "pixel_values": pixels.float().div_(127.5).sub_(1.0),
            "caption": self.captions[index],
            "original_size": (image.height, image.width),
            "crop_top_left": crop_top_left,
        }

    def _check_rows(self, caption_column: str, skip_bad: bool) -> None:
        """Check every row's caption and image header, keeping the good rows and their buckets."""
        for position, row in enumerate(self._rows.rows):
            caption = row.get(caption_column)
            value = row.get(self._image_column)
            source = image_source(value, self._rows.base_dir)
            if not isinstance(caption, str) or not caption.strip():
                shown = "no" if caption is None else f"an empty caption ({caption!r:.40}) in"
                problem = f"has {shown} column {caption_column!r}"
            elif source is None:
                problem = f"names no image in column {self._image_column!r} (it holds {value!r:.60})"
            else:
                try:
                    width, height = upright_size(source)
                except UNREADABLE as error:
                    reason = "does not exist" if isinstance(error, FileNotFoundError) else f"cannot be opened: {error}"
                    problem = f"image {self._label(value)} {reason}"
                else:
                    self._positions.append(position)
                    self.captions.append(caption)
                    self.bucket_ids.append(closest_bucket(width, height, self.buckets))
                    continue
            self._bad_row(position, problem, skip_bad)
        if self.skipped:
            logger.warning("%s: skipped %d bad rows, e.g. %s", self.name, self.skipped, self.skipped_examples[0])
        if not self._positions:
            raise DataError(
                f"no usable sample is left of {len(self._rows.rows)} rows ({self.skipped} skipped)",
                dataset=self.name,
                hint="check the split, the captions and the images",
            )

    def _bad_row(self, position: int, problem: str, skip_bad: bool) -> None:
        """Raise DataError for a bad row, or count it when bad rows are skipped."""
        message = f"{self._rows.where(position)} {problem}"
        if not skip_bad:
            raise DataError(message, dataset=self.name, hint=SKIP_HINT)
        self.skipped += 1
        if len(self.skipped_examples) < SKIPPED_EXAMPLES:
            self.skipped_examples.append(message)

    def _label(self, value: Any) -> str:
        """Name an image value in a message: its path, or where its bytes came from."""
        source = image_source(value, self._rows.base_dir)
        if isinstance(source, os.PathLike):
            return str(source)
        path = value.get("path") if isinstance(value, dict) else None
        return f"bytes ({path})" if path else f"bytes in column {self._image_column!r}"


def collate_image_captions(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Batch ``ImageCaptionDataset`` items of one bucket.

    Returns:
        ``{"indices": LongTensor[B], "pixel_values": FloatTensor[B, 3, H, W], "captions": list[str],
        "original_sizes": LongTensor[B, 2], "crop_top_lefts": LongTensor[B, 2]}``.

    Raises:
        DataError: the samples have different image sizes, i.e. come from different buckets.
    """
    sizes = sorted({tuple(s["pixel_values"].shape[1:]) for s in samples})
    if len(sizes) > 1:
        raise DataError(
            f"a batch holds images of {len(sizes)} sizes ({', '.join(f'{h}x{w}' for h, w in sizes)}); "
            "a batch must come from one bucket",
            hint="build the loader with build_dataloader, which batches by the dataset's bucket_ids",
        )
    return {
        "indices": torch.tensor([s["index"] for s in samples], dtype=torch.long),
        "pixel_values": torch.stack([s["pixel_values"] for s in samples]),
        "captions": [s["caption"] for s in samples],
        "original_sizes": torch.tensor([s["original_size"] for s in samples], dtype=torch.long),
        "crop_top_lefts": torch.tensor([s["crop_top_left"] for s in samples], dtype=torch.long),
    }
