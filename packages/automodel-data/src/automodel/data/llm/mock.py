"""Random token samples of a fixed length, for benchmarks that should not wait on data."""

from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from automodel.data.errors import DataError


class MockDataset(Dataset):
    """``num_samples`` items of ``seq_length`` random tokens, ``labels`` pre-shifted, the same for a given seed.

    Sample ``i`` is drawn from ``numpy.random.default_rng([seed, i])``, so items are made on
    demand and any index can be read in any order.
    """

    def __init__(self, vocab_size: int, seq_length: int, num_samples: int, seed: int = 0) -> None:
        """Check the sizes; nothing is generated until an item is read."""
        for argument, value in (("vocab_size", vocab_size), ("seq_length", seq_length), ("num_samples", num_samples)):
            if value < 1:
                raise DataError(f"{argument} must be positive, not {value}", dataset="MockDataset")
        self.name = "MockDataset"
        self.vocab_size = vocab_size
        self.seq_length = seq_length
        self.num_samples = num_samples
        self.seed = seed

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> dict[str, list[int]]:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} is out of range for {self.num_samples} samples")
        rng = np.random.default_rng([self.seed, index % self.num_samples])
        tokens = rng.integers(0, self.vocab_size, size=self.seq_length + 1)
        return {"input_ids": tokens[:-1].tolist(), "labels": tokens[1:].tolist()}
