"""Turning a list of samples into a batch of tensors: padded rows, or packed rows stacked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch

from automodel.data.llm.samples import IGNORE_INDEX


def default_collater(
    batch: Sequence[dict[str, Any]], pad_token_id: int = 0, pad_to_multiple_of: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-pad samples to the longest in the batch (rounded up to ``pad_to_multiple_of``).

    Args:
        batch: items with ``input_ids`` and pre-shifted ``labels``; other keys
            (such as ``prompt_length``) are dropped.
        pad_token_id: the id written into padded ``input_ids``.
        pad_to_multiple_of: round the padded length up to a multiple of this, or None.

    Returns:
        LongTensors of shape ``(len(batch), length)``: ``input_ids``, ``labels`` (-100 on
        padding), ``attention_mask`` (1 for real tokens, 0 for padding) and ``position_ids``
        (``0 .. length - 1`` on every row).
    """
    length = max(len(sample["input_ids"]) for sample in batch)
    if pad_to_multiple_of:
        length = math.ceil(length / pad_to_multiple_of) * pad_to_multiple_of
    input_ids = torch.full((len(batch), length), pad_token_id, dtype=torch.long)
    labels = torch.full((len(batch), length), IGNORE_INDEX, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), length), dtype=torch.long)
    for row, sample in enumerate(batch):
        size = len(sample["input_ids"])
        input_ids[row, :size] = torch.as_tensor(sample["input_ids"], dtype=torch.long)
        labels[row, :size] = torch.as_tensor(sample["labels"], dtype=torch.long)
        attention_mask[row, :size] = 1
    position_ids = torch.arange(length, dtype=torch.long).expand(len(batch), length).clone()
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask, "position_ids": position_ids}


def packed_collater(batch: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack packed rows (see ``pack_dataset``) into ``input_ids``, ``labels``, ``position_ids`` and ``seq_lens``.

    There is deliberately no ``attention_mask``: given ``position_ids`` that restart at 0
    for every sample, no attention mask and ``use_cache=False``, transformers (>= 4.56)
    builds a block-diagonal causal mask, so no token attends across samples.
    ``seq_lens`` holds each row's sample lengths, zero-padded to the row with the most
    samples, so real (non-padding) tokens can be counted.
    """
    stacked = {
        key: torch.as_tensor([sample[key] for sample in batch], dtype=torch.long)
        for key in ("input_ids", "labels", "position_ids")
    }
    most = max(len(sample["seq_lens"]) for sample in batch)
    stacked["seq_lens"] = torch.as_tensor(
        [list(sample["seq_lens"]) + [0] * (most - len(sample["seq_lens"])) for sample in batch], dtype=torch.long
    )
    return stacked
