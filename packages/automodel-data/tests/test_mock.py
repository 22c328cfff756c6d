"""MockDataset: fixed-length random samples, reproducible from the seed."""

from __future__ import annotations

import pytest

from automodel.data import DataError
from automodel.data.llm import MockDataset


def test_mock_dataset_is_fixed_length_in_range_and_reproducible() -> None:
    dataset = MockDataset(vocab_size=50, seq_length=12, num_samples=5, seed=3)
    items = [dataset[i] for i in range(len(dataset))]
    assert len(items) == 5
    assert all(len(item["input_ids"]) == len(item["labels"]) == 12 for item in items)
    assert all(0 <= token < 50 for item in items for token in item["input_ids"] + item["labels"])
    assert items[2]["labels"][:-1] == items[2]["input_ids"][1:]  # pre-shifted
    assert MockDataset(50, 12, 5, seed=3)[2] == items[2]
    assert MockDataset(50, 12, 5, seed=4)[2] != items[2]
    with pytest.raises(IndexError):
        dataset[5]


def test_mock_dataset_rejects_non_positive_sizes() -> None:
    with pytest.raises(DataError, match="MockDataset: seq_length must be positive, not 0"):
        MockDataset(vocab_size=50, seq_length=0, num_samples=5)
