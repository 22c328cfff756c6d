"""default_collater: right padding to the longest sample or a multiple, with masks and positions."""

from __future__ import annotations

import torch

from automodel.data.llm import default_collater

BATCH = [
    {"input_ids": [5, 6, 7], "labels": [-100, 7, 8], "prompt_length": 2},
    {"input_ids": [9], "labels": [10], "prompt_length": 0},
]


def test_default_collater_right_pads_to_the_longest_sample() -> None:
    batch = default_collater(BATCH, pad_token_id=1)
    assert set(batch) == {"input_ids", "labels", "attention_mask", "position_ids"}
    assert batch["input_ids"].tolist() == [[5, 6, 7], [9, 1, 1]]
    assert batch["labels"].tolist() == [[-100, 7, 8], [10, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch["position_ids"].tolist() == [[0, 1, 2], [0, 1, 2]]
    assert all(tensor.dtype == torch.long for tensor in batch.values())


def test_default_collater_rounds_the_length_up_to_a_multiple() -> None:
    batch = default_collater(BATCH, pad_to_multiple_of=8)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][1].tolist() == [9] + [0] * 7
    assert batch["attention_mask"].sum().item() == 4
