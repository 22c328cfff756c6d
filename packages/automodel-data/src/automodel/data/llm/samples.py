"""Tokenized samples: length limits, the checks every dataset needs, and pre-shifted items.

A sample is a token sequence ``t`` with a loss mask (``mask[j]`` is true when ``t[j]`` is a
target). Its item is ``input_ids = t[:-1]`` and ``labels = t[1:]`` with -100 wherever the
mask is false, so ``labels[i]`` is the token that should follow ``input_ids[: i + 1]``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from automodel.data.errors import DataError

IGNORE_INDEX = -100
TRUNCATION_MODES = ("drop", "truncate")

logger = logging.getLogger(__name__)


def check_length_options(seq_length: int | None, truncation: str, dataset: str) -> None:
    """Raise DataError unless ``seq_length`` is None or positive and ``truncation`` is ``drop`` or ``truncate``."""
    if seq_length is not None and seq_length < 1:
        raise DataError(f"seq_length must be a positive number of tokens, not {seq_length}", dataset=dataset)
    if truncation not in TRUNCATION_MODES:
        raise DataError(
            f"truncation must be `drop` or `truncate`, not {truncation!r}",
            dataset=dataset,
            hint="`drop` skips over-long samples, `truncate` cuts them to seq_length",
        )


class SampleCollector:
    """Gathers tokenized samples, applying ``seq_length`` and counting what it drops or cuts.

    ``seq_length`` bounds ``len(input_ids)``, so a sequence may hold ``seq_length + 1`` tokens.
    """

    def __init__(self, dataset: str, seq_length: int | None, truncation: str) -> None:
        check_length_options(seq_length, truncation, dataset)
        self.dataset = dataset
        self.seq_length = seq_length
        self.truncation = truncation
        self.rows = 0
        self.too_long = 0
        self.no_target = 0
        self.longest = 0
        self._tokens: list[np.ndarray] = []
        self._masks: list[np.ndarray] = []
        self._prompt_lengths: list[int] = []

    def add(self, tokens: Sequence[int], mask: Sequence[bool], prompt_length: int) -> None:
        """Add a sample: ``mask[j]`` says whether ``tokens[j]`` is a target; ``prompt_length`` counts prompt tokens."""
        self.rows += 1
        self.longest = max(self.longest, len(tokens) - 1)  # input_ids of a sequence hold all but its last token
        if self.seq_length is not None and len(tokens) - 1 > self.seq_length:
            self.too_long += 1
            if self.truncation == "drop":
                return
            tokens, mask = tokens[: self.seq_length + 1], mask[: self.seq_length + 1]
        if not any(mask[1:]):
            self.no_target += 1
            return
        self._tokens.append(np.asarray(tokens, dtype=np.int32))
        self._masks.append(np.asarray(mask, dtype=bool))
        self._prompt_lengths.append(min(prompt_length, len(tokens)))

    def finish(self) -> TokenizedSamples:
        """Log what was dropped or cut and return the samples.

        Raises:
            DataError: when no sample is left, naming why (no rows, all too long, no target).
        """
        if self.too_long:
            action = "dropped" if self.truncation == "drop" else "truncated"
            logger.warning(
                "%s: %s %d of %d samples longer than seq_length=%d tokens (longest %d)",
                self.dataset,
                action,
                self.too_long,
                self.rows,
                self.seq_length,
                self.longest,
            )
        if self.no_target and self._tokens:
            logger.warning("%s: dropped %d samples with no token to learn from", self.dataset, self.no_target)
        if self._tokens:
            logger.info("%s: %d samples", self.dataset, len(self._tokens))
            return TokenizedSamples(self._tokens, self._masks, self._prompt_lengths)
        if self.rows == 0:
            raise DataError("has no rows", dataset=self.dataset, hint="check the split and limit_dataset_samples")
        if self.truncation == "drop" and self.too_long == self.rows:
            raise DataError(
                f"every sample is longer than seq_length={self.seq_length} tokens (longest {self.longest})",
                dataset=self.dataset,
                hint="raise seq_length or set truncation: truncate",
            )
        raise DataError(
            "every label is -100: no sample has a token to learn from",
            dataset=self.dataset,
            hint="check that each sample has an answer or assistant turn within seq_length",
        )


class TokenizedSamples:
    """Samples stored flat in numpy arrays, returned as pre-shifted items."""

    def __init__(self, tokens: list[np.ndarray], masks: list[np.ndarray], prompt_lengths: list[int]) -> None:
        self.offsets = np.cumsum([0] + [len(t) for t in tokens])
        self.tokens = np.concatenate(tokens)
        self.masks = np.concatenate(masks)
        self.prompt_lengths = np.asarray(prompt_lengths, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.prompt_lengths)

    def item(self, index: int) -> dict[str, Any]:
        """Return ``input_ids``, ``labels`` (pre-shifted, -100 off-target) and ``prompt_length`` of one sample."""
        start, end = self.offsets[index], self.offsets[index + 1]
        tokens, mask = self.tokens[start:end], self.masks[start:end]
        labels = np.where(mask[1:], tokens[1:], IGNORE_INDEX)
        return {
            "input_ids": tokens[:-1].tolist(),
            "labels": labels.tolist(),
            "prompt_length": int(self.prompt_lengths[index]),
        }


class TokenizedDataset(Dataset):
    """A map-style dataset of tokenized samples; ``name`` is the dataset's path or hub id."""

    def __init__(self, name: str, samples: TokenizedSamples) -> None:
        self.name = name
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} samples")
        return self.samples.item(index % len(self))
