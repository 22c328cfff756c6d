"""Image-text chat datasets: rows of OpenAI-style ``messages`` whose parts name images.

Construction reads every row once, eagerly: it checks the messages, opens and decodes
every image (so a missing or corrupt image is reported, or skipped, before training
starts) and, when ``max_length`` is given, runs the processor on the sample to count its
tokens. It keeps only the indices of the rows that passed. Items are built lazily: each
``__getitem__`` reads its row again and decodes its images, so no pixels are held in
memory and the processor runs once per sample per epoch, in the collate.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch.utils.data import Dataset

from automodel.data.errors import DataError, dataset_label
from automodel.data.llm.rows import load_rows, require_column
from automodel.data.vlm.collate import encode_conversations
from automodel.data.vlm.conversation import has_assistant_text, normalize_conversation, with_images
from automodel.data.vlm.images import ImageReadError, image_base
from automodel.data.vlm.rows import UndecodedRows

if TYPE_CHECKING:
    import datasets
    from transformers import ProcessorMixin

PathOrId = str | os.PathLike[str]

logger = logging.getLogger(__name__)


class ImageTextChatDataset(Dataset):
    """Conversations with images in a ``messages`` column; items are ``{"messages": conversation}``.

    Each message is ``{"role", "content"}``; content is a string or a list of
    ``{"type": "text", "text"}`` and image parts: ``{"type": "image", "image": path}`` (a
    path relative to the data file's folder or ``image_root``, an absolute path, an
    http(s) URL or a `datasets` Image value) or ``{"type": "image_url", "image_url":
    {"url": ...}}``. An image part with no value takes the next image of the row's
    ``images`` column. In an item every content is a list of parts and every image part
    holds a decoded RGB ``PIL.Image``; the collates of ``automodel.data.vlm`` turn a list of
    items into tensors. Rows without assistant text are dropped and counted in the log.

    Attributes:
        name: the dataset's path or hub id.
        base_dir: the folder relative image paths start from, or None.
        skipped_samples: rows skipped for a missing or unreadable image (``skip_bad_samples``).
        too_long_samples: rows dropped for having more than ``max_length`` tokens.
    """

    def __init__(
        self,
        path_or_dataset_id: PathOrId | Sequence[PathOrId],
        split: str = "train",
        *,
        processor: ProcessorMixin | None = None,
        image_root: PathOrId | None = None,
        max_length: int | None = None,
        skip_bad_samples: bool = False,
        limit_dataset_samples: int | None = None,
    ) -> None:
        """Load the rows and check every conversation and image (see the module docstring).

        Args:
            path_or_dataset_id: a local data file (or list), a saved directory or a hub id.
            split: the split, slicing allowed (``train[:90%]``).
            processor: a Hugging Face processor; needed only to count tokens for ``max_length``.
            image_root: the folder relative image paths start from; by default the data
                file's folder (none for a hub id).
            max_length: drop samples with more than this many tokens after processing
                (image tokens included); None keeps all.
            skip_bad_samples: skip rows with a missing or unreadable image instead of raising.
            limit_dataset_samples: read only this many rows.

        Raises:
            DataError: a missing column, malformed messages, a URL while offline, a missing
                or unreadable image (unless skipped), ``max_length`` without a processor, or
                no sample left.
        """
        self.name = dataset_label(path_or_dataset_id)
        if max_length is not None and (max_length < 1 or processor is None):
            raise DataError(
                f"max_length={max_length} needs a positive number of tokens and a processor to count them",
                dataset=self.name,
                hint="pass processor= the model's processor, or leave max_length unset (null)",
            )
        rows = load_rows(path_or_dataset_id, split, limit_dataset_samples, self.name)
        self._rows = UndecodedRows(rows.select_columns(self._columns(rows)))
        self.base_dir = image_base(path_or_dataset_id, image_root)
        self.skipped_samples = 0
        self.too_long_samples = 0
        self._indices = self._check_rows(processor, max_length, skip_bad_samples)

    def __len__(self) -> int:
        return len(self._indices)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return ``{"messages": conversation}`` with the sample's images decoded."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} samples")
        row = self._indices[index]
        conversation = self._conversation(self._rows[row], row)
        return {"messages": with_images(conversation, base_dir=self.base_dir, row=row, dataset=self.name)}

    def _columns(self, rows: datasets.Dataset) -> list[str]:
        """Check the columns a conversation is built from and return them."""
        require_column(rows, "messages", type(self).__name__, self.name)
        return ["messages", "images"] if "images" in rows.column_names else ["messages"]

    def _conversation(self, row: dict[str, Any], index: int) -> list[dict[str, Any]]:
        """Build the normalized conversation of one row, image values unopened."""
        return normalize_conversation(row["messages"], row.get("images"), row=index, dataset=self.name)

    def _check_rows(self, processor: ProcessorMixin | None, max_length: int | None, skip_bad: bool) -> list[int]:
        """Read every row once, returning the indices of the samples to keep and logging what was left out."""
        kept: list[int] = []
        rows = no_answer = longest = 0
        for index, row in enumerate(self._rows):
            rows += 1
            conversation = self._conversation(row, index)
            if not has_assistant_text(conversation):
                no_answer += 1
                continue
            try:
                loaded = with_images(conversation, base_dir=self.base_dir, row=index, dataset=self.name)
            except ImageReadError:
                if not skip_bad:
                    raise
                self.skipped_samples += 1
                continue
            if max_length is not None:
                length = encode_conversations([loaded], processor)["input_ids"].shape[1]
                longest = max(longest, length)
                if length > max_length:
                    self.too_long_samples += 1
                    continue
            kept.append(index)
        self._log(rows, no_answer, max_length, longest)
        if not kept:
            raise DataError(
                f"no sample is left of {rows} rows ({no_answer} without assistant text, {self.skipped_samples} "
                f"with a bad image, {self.too_long_samples} longer than max_length={max_length} tokens)",
                dataset=self.name,
                hint="check the split, the images and max_length",
            )
        return kept

    def _log(self, rows: int, no_answer: int, max_length: int | None, longest: int) -> None:
        """Log, once, how many rows were left out and why."""
        if self.skipped_samples:
            logger.warning(
                "%s: skipped %d of %d samples with a missing or unreadable image", self.name, self.skipped_samples, rows
            )
        if self.too_long_samples:
            logger.warning(
                "%s: dropped %d of %d samples longer than max_length=%d tokens (longest %d)",
                self.name,
                self.too_long_samples,
                rows,
                max_length,
                longest,
            )
        if no_answer:
            logger.warning("%s: dropped %d of %d samples with no assistant text", self.name, no_answer, rows)
