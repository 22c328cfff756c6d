"""Which tensor goes in which weight file, and the file names, exactly as transformers does it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
SHARD_GLOB = "model-*-of-*.safetensors"


@dataclass(frozen=True)
class ShardPlan:
    """The weight files of a model: ``files`` maps each file name to its tensor names, in writing order."""

    files: dict[str, list[str]]
    total_size: int

    @property
    def weight_map(self) -> dict[str, str]:
        """Return ``{tensor name: file name}``, the index's ``weight_map``."""
        return {name: file for file, names in self.files.items() for name in names}


def saved_nbytes(tensor: torch.Tensor, dtype: torch.dtype | None) -> int:
    """Bytes ``tensor`` takes on disk once floating values are cast to ``dtype`` (None keeps its dtype)."""
    target = dtype if dtype is not None and tensor.is_floating_point() else tensor.dtype
    return tensor.numel() * target.itemsize


def plan_shards(tensors: Mapping[str, torch.Tensor], max_bytes: int, dtype: torch.dtype | None) -> ShardPlan:
    """Group tensors into files of at most ``max_bytes`` (a larger tensor gets a file of its own).

    Tensors are taken in order and a new file starts when the next one would not fit, as
    huggingface_hub's ``split_torch_state_dict_into_shards`` does, so the same model and
    ``max_shard_size`` give the same files as ``save_pretrained``: ``model.safetensors``
    when everything fits in one, else ``model-0000K-of-0000N.safetensors``.
    """
    groups: list[list[str]] = []
    current: list[str] = []
    current_size = total = 0
    for name, tensor in tensors.items():
        size = saved_nbytes(tensor, dtype)
        total += size
        if size > max_bytes:
            groups.append([name])
            continue
        if current and current_size + size > max_bytes:
            groups.append(current)
            current, current_size = [], 0
        current.append(name)
        current_size += size
    if current or not groups:
        groups.append(current)
    if len(groups) == 1:
        return ShardPlan({SINGLE_FILE: groups[0]}, total)
    count = len(groups)
    return ShardPlan({f"model-{i + 1:05d}-of-{count:05d}.safetensors": g for i, g in enumerate(groups)}, total)
