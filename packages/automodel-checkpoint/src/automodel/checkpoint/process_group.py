"""This process's place among the ranks, and the gloo group checkpoint writes coordinate over."""

from __future__ import annotations

from typing import Any

import torch.distributed as dist


def is_distributed() -> bool:
    """True when torch.distributed has a default process group."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's global rank, 0 without a process group."""
    return dist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """The number of processes, 1 without a process group."""
    return dist.get_world_size() if is_distributed() else 1


def new_checkpoint_group() -> Any:
    """Return a gloo group over all ranks (None without a process group); every rank must call this together.

    Checkpoint writes coordinate (DCP planning, the barrier before the rename) over their
    own group, so a background write never interleaves with the training loop's collectives.
    """
    return dist.new_group(backend="gloo") if is_distributed() else None


def barrier(group: Any) -> None:
    """Wait for every rank of ``group``; does nothing without a group."""
    if group is not None:
        dist.barrier(group=group)


def broadcast_from_rank0(value: Any, group: Any) -> Any:
    """Return rank 0's ``value`` on every rank (a small picklable object made by this program, never read from disk)."""
    if group is None:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0, group=group)
    return box[0]


def all_gather(value: Any, group: Any) -> list[Any]:
    """Return every rank's ``value``, in rank order (``[value]`` without a group); every rank of ``group`` must call it.

    Values are small picklable objects made by this program, never read from disk.
    """
    if group is None:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size(group)
    dist.all_gather_object(gathered, value, group=group)
    return gathered
