"""Packing: several samples side by side in fixed-length rows, kept apart by restarting position ids."""

from __future__ import annotations

import bisect
import logging

import numpy as np
from torch.utils.data import Dataset, IterableDataset

from automodel.data.errors import DataError
from automodel.data.llm.samples import IGNORE_INDEX

logger = logging.getLogger(__name__)


class PackedDataset(Dataset):
    """Rows of ``packed_sequence_size`` tokens, each holding whole samples (built by ``pack_dataset``).

    A row's items: ``input_ids``, ``labels`` (the samples' pre-shifted labels), ``position_ids``
    restarting at 0 at every sample, and ``seq_lens`` (the samples' lengths in order). Padding
    at the end of a row has ``pad_token_id``, labels -100 and its own restarted positions.

    Attributes:
        name: the packed dataset's name.
        packing_efficiency: real tokens / all tokens of the rows, in (0, 1].
    """

    def __init__(
        self, name: str, rows: dict[str, np.ndarray], seq_lens: list[list[int]], packing_efficiency: float
    ) -> None:
        self.name = name
        self.rows = rows
        self.seq_lens = seq_lens
        self.packing_efficiency = packing_efficiency

    def __len__(self) -> int:
        return len(self.seq_lens)

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        item = {key: values[index].tolist() for key, values in self.rows.items()}
        item["seq_lens"] = list(self.seq_lens[index])
        return item


def pack_dataset(
    dataset: Dataset, packed_sequence_size: int, pad_token_id: int = 0, drop_long_samples: bool = True
) -> PackedDataset:
    """Pack a map-style dataset's samples into rows of ``packed_sequence_size`` tokens.

    Samples are placed best-fit, longest first, so rows are nearly full; a sample is never
    split. The packing efficiency is logged and kept as ``packing_efficiency``.

    Args:
        dataset: items with ``input_ids`` and pre-shifted ``labels`` (other keys are dropped).
        packed_sequence_size: tokens per packed row.
        pad_token_id: the id that fills the end of a row.
        drop_long_samples: drop (and count, in the log) samples longer than a row; False
            raises DataError instead.

    Returns:
        A ``PackedDataset``; batch it with ``packed_collater``.

    Raises:
        DataError: an iterable dataset, a bad size, over-long samples with
            ``drop_long_samples=False``, or nothing left to pack.
    """
    name = getattr(dataset, "name", type(dataset).__name__)
    if isinstance(dataset, IterableDataset):
        raise DataError(
            "an iterable (streaming) dataset cannot be packed", dataset=name, hint="pack a map-style dataset"
        )
    if packed_sequence_size < 1:
        raise DataError(f"packed_sequence_size must be positive, not {packed_sequence_size}", dataset=name)
    lengths = [len(dataset[i]["input_ids"]) for i in range(len(dataset))]
    fitting = [i for i, length in enumerate(lengths) if length <= packed_sequence_size]
    too_long = len(lengths) - len(fitting)
    if too_long:
        message = (
            f"{too_long} of {len(lengths)} samples are longer than "
            f"packed_sequence_size={packed_sequence_size} tokens (longest {max(lengths)})"
        )
        if not drop_long_samples:
            raise DataError(
                message,
                dataset=name,
                hint="raise packed_sequence_size, lower the dataset's seq_length, or set drop_long_samples: true",
            )
        logger.warning("%s: dropped %s", name, message)
    if not fitting:
        raise DataError(
            "has no sample to pack" if not lengths else "every sample is longer than a packed row",
            dataset=name,
            hint="check the dataset and packed_sequence_size",
        )
    bins = _best_fit_decreasing([(lengths[i], i) for i in fitting], packed_sequence_size)
    rows, seq_lens = _fill_rows(dataset, bins, packed_sequence_size, pad_token_id)
    real = sum(lengths[i] for i in fitting)
    efficiency = real / (len(bins) * packed_sequence_size)
    logger.info(
        "%s: packed %d samples into %d rows of %d tokens, packing efficiency %.1f%%",
        name,
        len(fitting),
        len(bins),
        packed_sequence_size,
        100 * efficiency,
    )
    return PackedDataset(f"{name} (packed)", rows, seq_lens, efficiency)


def _best_fit_decreasing(sized: list[tuple[int, int]], capacity: int) -> list[list[int]]:
    """Assign ``(length, index)`` items to bins of ``capacity``: longest first, each into the fullest bin it fits."""
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, bin), sorted
    for length, index in sorted(sized, key=lambda item: (-item[0], item[1])):
        slot = bisect.bisect_left(free, (length, -1))
        if slot == len(free):
            bins.append([index])
            bisect.insort(free, (capacity - length, len(bins) - 1))
        else:
            room, chosen = free.pop(slot)
            bins[chosen].append(index)
            bisect.insort(free, (room - length, chosen))
    return [sorted(members) for members in bins]


def _fill_rows(
    dataset: Dataset, bins: list[list[int]], size: int, pad_token_id: int
) -> tuple[dict[str, np.ndarray], list[list[int]]]:
    """Write each bin's samples (in dataset order) into a row, then padding with its own positions."""
    rows = {
        "input_ids": np.full((len(bins), size), pad_token_id, dtype=np.int32),
        "labels": np.full((len(bins), size), IGNORE_INDEX, dtype=np.int32),
        "position_ids": np.zeros((len(bins), size), dtype=np.int32),
    }
    seq_lens = []
    for row, members in enumerate(bins):
        start = 0
        seq_lens.append([])
        for index in members:
            sample = dataset[index]
            length = len(sample["input_ids"])
            rows["input_ids"][row, start : start + length] = sample["input_ids"]
            rows["labels"][row, start : start + length] = sample["labels"]
            rows["position_ids"][row, start : start + length] = np.arange(length)
            seq_lens[-1].append(length)
            start += length
        rows["position_ids"][row, start:] = np.arange(size - start)
    return rows, seq_lens
