"""DDP: a full model replica on every rank, gradients summed over the ``dp`` dim after each backward."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh
from torch.nn.parallel import DistributedDataParallel


def _sum_gradients(group, bucket):
    """DDP communication hook: all-reduce a gradient bucket (``dist.GradBucket``) as a sum (DDP's default averages).

    Returns the future of the summed bucket tensor.
    """
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda future: future.value()[0])


def apply_ddp(model: torch.nn.Module, mesh: DeviceMesh, device: torch.device) -> DistributedDataParallel:
    """Wrap ``model`` in DistributedDataParallel over the mesh's ``dp`` group.

    Gradients are summed, not averaged: the training step already divides each loss by
    the label tokens of the whole global batch. Frozen parameters (PEFT) are skipped by DDP.

    Args:
        model: the model, already on ``device``.
        mesh: the device mesh from ``build_device_mesh``.
        device: this rank's device (its index is DDP's ``device_ids`` on CUDA).

    Returns:
        The DDP wrapper; ``unwrap_model`` gives the model back for saving and generation.
    """
    group = mesh["dp"].get_group()
    wrapped = DistributedDataParallel(
        model, device_ids=[device.index] if device.type == "cuda" else None, process_group=group
    )
    wrapped.register_comm_hook(group, _sum_gradients)
    return wrapped


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """Return the model inside a wrapper that keeps it as ``.module`` (DDP, Megatron-FSDP); others as they are."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, torch.nn.Module) else model
