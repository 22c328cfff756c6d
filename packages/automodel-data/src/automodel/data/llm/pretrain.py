"""Pretraining text: documents tokenized, each ended by EOS, concatenated and cut into blocks.

Block ``k`` is ``tokens[k * L : k * L + L + 1]`` for ``L = seq_length``: consecutive blocks
share one token, so every next-token pair of the stream is a target exactly once.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from automodel.data.errors import DataError, dataset_label
from automodel.data.llm.rows import BATCH_ROWS, load_rows, require_column
from automodel.data.llm.tokenizer_checks import eos_token_id
from automodel.data.loading import load_hf_dataset

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

logger = logging.getLogger(__name__)

PathOrId = str | os.PathLike[str]
STREAM_BATCH_ROWS = 256


def _check_seq_length(seq_length: int, dataset: str) -> None:
    """Raise DataError unless ``seq_length`` is a positive int."""
    if not isinstance(seq_length, int) or seq_length < 1:
        raise DataError(f"seq_length must be a positive number of tokens, not {seq_length!r}", dataset=dataset)


def _document_tokens(
    texts: list[Any], tokenizer: PreTrainedTokenizerBase, eos: int, text_column: str, dataset: str
) -> list[list[int]]:
    """Tokenize non-empty documents (with the tokenizer's special tokens) and end each with EOS."""
    documents = [text for text in texts if text is not None and text != ""]
    for text in documents:
        if not isinstance(text, str):
            raise DataError(
                f"column {text_column!r} holds {type(text).__name__} {text!r:.60}, not text",
                dataset=dataset,
                hint="set text_column to a column of strings",
            )
    encoded = tokenizer(documents)["input_ids"] if documents else []
    return [ids if ids and ids[-1] == eos else [*ids, eos] for ids in encoded]


class PretrainTextDataset(Dataset):
    """Map-style blocks of ``seq_length + 1`` tokens as ``input_ids`` / pre-shifted ``labels``, all targets.

    ``PretrainTextDataset(..., streaming=True)`` returns a ``StreamingPretrainTextDataset``
    instead, which reads the data lazily.
    """

    def __new__(
        cls,
        path_or_dataset_id: PathOrId | Sequence[PathOrId],
        tokenizer: PreTrainedTokenizerBase,
        seq_length: int,
        text_column: str = "text",
        split: str = "train",
        streaming: bool = False,
        limit_dataset_samples: int | None = None,
    ) -> PretrainTextDataset | StreamingPretrainTextDataset:
        """Return a streaming dataset when ``streaming`` is true, else a new (map-style) instance."""
        if streaming:
            return StreamingPretrainTextDataset(
                path_or_dataset_id, tokenizer, seq_length, text_column, split, limit_dataset_samples
            )
        return super().__new__(cls)

    def __init__(
        self,
        path_or_dataset_id: PathOrId | Sequence[PathOrId],
        tokenizer: PreTrainedTokenizerBase,
        seq_length: int,
        text_column: str = "text",
        split: str = "train",
        streaming: bool = False,
        limit_dataset_samples: int | None = None,
    ) -> None:
        """Read, tokenize and cut the whole split into blocks held in memory.

        Args:
            path_or_dataset_id: a local data file (or list), a saved directory or a hub id.
            tokenizer: a Hugging Face tokenizer with an EOS token.
            seq_length: tokens per ``input_ids``; blocks hold ``seq_length + 1`` tokens.
            text_column: the column holding each document's text.
            split: the split, slicing allowed (``train[:1%]``).
            streaming: False here (True is served by ``StreamingPretrainTextDataset``).
            limit_dataset_samples: read only this many documents.

        Raises:
            DataError: a missing text column, a non-text value, or fewer than ``seq_length + 1`` tokens.
        """
        name = dataset_label(path_or_dataset_id)
        _check_seq_length(seq_length, name)
        eos = eos_token_id(tokenizer, name)
        rows = load_rows(path_or_dataset_id, split, limit_dataset_samples, name)
        require_column(rows, text_column, "text_column", name)
        pieces = [
            np.asarray(ids, dtype=np.int32)
            for batch in rows.select_columns([text_column]).iter(batch_size=BATCH_ROWS)
            for ids in _document_tokens(batch[text_column], tokenizer, eos, text_column, name)
        ]
        tokens = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
        blocks = (len(tokens) - 1) // seq_length
        if blocks < 1:
            raise DataError(
                f"holds {len(tokens)} tokens, fewer than one block of seq_length + 1 = {seq_length + 1}",
                dataset=name,
                hint="lower seq_length or add text",
            )
        self.name = name
        self.seq_length = seq_length
        self.tokens = tokens[: blocks * seq_length + 1]
        logger.info("%s: %d documents, %d tokens, %d blocks of %d", name, len(pieces), len(tokens), blocks, seq_length)

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.seq_length

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} blocks")
        start = (index % len(self)) * self.seq_length
        block = self.tokens[start : start + self.seq_length + 1]
        return {"input_ids": block[:-1].tolist(), "labels": block[1:].tolist()}


class StreamingPretrainTextDataset(IterableDataset):
    """Blocks as in ``PretrainTextDataset``, read lazily (``datasets`` streaming) for data larger than memory.

    Each data-parallel rank reads its own shard (``set_shard``), and each loader worker a
    part of it: whole files when they divide evenly, else every n-th document. Documents are
    read in order, not shuffled.
    """

    def __init__(
        self,
        path_or_dataset_id: PathOrId | Sequence[PathOrId],
        tokenizer: PreTrainedTokenizerBase,
        seq_length: int,
        text_column: str = "text",
        split: str = "train",
        limit_dataset_samples: int | None = None,
    ) -> None:
        """Open the data lazily and check its first row (for the text column); reads nothing else.

        Args:
            path_or_dataset_id: a local data file (or list), a saved directory or a hub id.
            tokenizer: a Hugging Face tokenizer with an EOS token.
            seq_length: tokens per ``input_ids``; blocks hold ``seq_length + 1`` tokens.
            text_column: the column holding each document's text.
            split: the split (no slicing when streaming).
            limit_dataset_samples: read only this many documents in all (before sharding).

        Raises:
            DataError: no rows, or a missing text column.
        """
        self.name = dataset_label(path_or_dataset_id)
        _check_seq_length(seq_length, self.name)
        if limit_dataset_samples is not None and limit_dataset_samples < 1:
            raise DataError(
                f"limit_dataset_samples must be a positive number of documents, not {limit_dataset_samples}",
                dataset=self.name,
            )
        self.eos = eos_token_id(tokenizer, self.name)
        self.tokenizer = tokenizer
        self.seq_length = seq_length
        self.text_column = text_column
        self.stream = load_hf_dataset(path_or_dataset_id, split=split, streaming=True)
        if limit_dataset_samples is not None:
            self.stream = self.stream.take(limit_dataset_samples)
        first = next(self.stream.iter(batch_size=1), None)
        if first is None:
            raise DataError("has no rows", dataset=self.name, hint="check the split and the files")
        if text_column not in first:
            raise DataError(
                f"text_column names column {text_column!r}, which the dataset does not have",
                dataset=self.name,
                hint=f"its columns are {', '.join(first)}",
            )
        self.rank, self.world_size = 0, 1

    def set_shard(self, rank: int, world_size: int) -> None:
        """Read only shard ``rank`` of ``world_size`` (one per data-parallel rank)."""
        if not 0 <= rank < world_size:
            raise DataError(f"shard {rank} of {world_size} does not exist", dataset=self.name)
        self.rank, self.world_size = rank, world_size

    def __iter__(self) -> Iterator[dict[str, list[int]]]:
        worker = get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker else (1, 0)
        index, count = self.rank * workers + worker_id, self.world_size * workers
        from datasets.distributed import split_dataset_by_node

        shard = split_dataset_by_node(self.stream, rank=index, world_size=count)
        documents = (
            ids
            for batch in shard.iter(batch_size=STREAM_BATCH_ROWS)
            for ids in _document_tokens(batch[self.text_column], self.tokenizer, self.eos, self.text_column, self.name)
        )
        blocks = 0
        for block in _blocks(documents, self.seq_length):
            blocks += 1
            yield {"input_ids": block[:-1], "labels": block[1:]}
        if blocks == 0:
            raise DataError(
                f"shard {index} of {count} (rank and loader worker) holds less than one block of "
                f"seq_length + 1 = {self.seq_length + 1} tokens",
                dataset=self.name,
                hint="lower seq_length, use fewer ranks or loader workers, or add text",
            )


def _blocks(documents: Iterable[list[int]], seq_length: int) -> Iterator[list[int]]:
    """Concatenate token lists and yield blocks of ``seq_length + 1`` tokens, consecutive blocks sharing one."""
    buffer: list[int] = []
    for ids in documents:
        buffer += ids
        start = 0
        while len(buffer) - start > seq_length:
            yield buffer[start : start + seq_length + 1]
            start += seq_length
        del buffer[:start]
