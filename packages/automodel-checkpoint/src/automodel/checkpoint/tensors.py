"""Taking tensors out of a live model: tie detection, one-at-a-time gathering and casting, CPU staging."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.distributed.tensor import DTensor


def storage_key(tensor: torch.Tensor) -> tuple | None:
    """Return what makes two tensors the same data (storage, offset, shape, stride, dtype); None if empty or meta.

    For a DTensor the key is that of its local shard, so tied FSDP2/TP parameters match too.
    """
    local = tensor.to_local() if isinstance(tensor, DTensor) else tensor
    if local.numel() == 0 or local.device.type == "meta":
        return None
    return (
        local.device,
        local.untyped_storage().data_ptr(),
        local.storage_offset(),
        tuple(local.shape),
        local.stride(),
        local.dtype,
    )


def unique_entries(state_dict: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Split a state dict into the entries to write and the tied names to drop.

    Returns ``(kept, aliases)``: ``kept`` keeps state-dict order and, of tensors that are
    the same data, only the first name (as transformers keeps ``model.embed_tokens.weight``
    and drops ``lm_head.weight``); ``aliases`` maps each dropped name to the kept one.
    """
    kept: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first_name: dict[tuple, str] = {}
    for name, tensor in state_dict.items():
        key = storage_key(tensor)
        if key is not None and key in first_name:
            aliases[name] = first_name[key]
            continue
        if key is not None:
            first_name[key] = name
        kept[name] = tensor
    return kept, aliases


def materialize(tensor: torch.Tensor, dtype: torch.dtype | None) -> torch.Tensor:
    """Return ``tensor`` as a whole, contiguous CPU tensor, floating values cast to ``dtype`` (None keeps them).

    A DTensor is cast on its shards, then gathered with ``full_tensor()``: a collective
    every rank of its mesh must enter. A CPU tensor that needs no cast is returned without a copy.
    """
    if dtype is not None and tensor.is_floating_point():
        tensor = tensor.to(dtype)
    if isinstance(tensor, DTensor):
        tensor = tensor.full_tensor()
    return tensor.detach().to("cpu").contiguous()


class CpuStager:
    """Copies nested states (dicts, lists, tuples of tensors) to CPU tensors that training cannot change.

    Tensors that are the same data get one copy, so ties survive; a DTensor stays a DTensor
    over a CPU copy of its local shard, so torch.distributed.checkpoint still writes only
    this rank's part. Each copy reuses the buffers of the previous one where the tensor at
    the same place has the same shape and dtype: a save after the first costs a memory
    copy, not fresh pages from the operating system. The caller must be done with the
    previous copy before asking for the next.
    """

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def stage(self, value: Any) -> Any:
        """Return a copy of ``value`` whose tensors are CPU tensors owned by this stager."""
        used: dict[str, torch.Tensor] = {}
        copy = self._stage(value, "", {}, used)
        self._buffers = used
        return copy

    def _stage(self, value: Any, path: str, memo: dict[tuple, torch.Tensor], used: dict[str, torch.Tensor]) -> Any:
        if isinstance(value, torch.Tensor):
            key = storage_key(value)
            if key is not None and key in memo:
                return memo[key]
            local = value.to_local() if isinstance(value, DTensor) else value
            previous = self._buffers.get(path)
            reusable = previous is not None and (previous.shape, previous.dtype) == (local.shape, local.dtype)
            buffer = previous.copy_(local.detach()) if reusable else local.detach().to("cpu", copy=True)
            used[path] = buffer
            copy = buffer
            if isinstance(value, DTensor):
                copy = DTensor.from_local(
                    buffer,
                    value.device_mesh,
                    value.placements,
                    run_check=False,
                    shape=value.shape,
                    stride=value.stride(),
                )
            if key is not None:
                memo[key] = copy
            return copy
        if isinstance(value, Mapping):
            return {k: self._stage(v, f"{path}/{k}", memo, used) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            items = [self._stage(v, f"{path}/{i}", memo, used) for i, v in enumerate(value)]
            return items if isinstance(value, list) else tuple(items)
        return value
