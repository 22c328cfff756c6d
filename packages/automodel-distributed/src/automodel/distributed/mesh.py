"""The named device mesh: ``dp_replicate x dp_shard x cp x tp``, plus the flattened dims the recipe uses."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh

from automodel.distributed.config import MeshSizes

MESH_DIMS = ("dp_replicate", "dp_shard", "cp", "tp")
# Indexing the root mesh by a flattened name is how torch's own recipes reach these groups; newer
# torch warns that it wants callers to keep the flattened meshes instead, but still supports it.
warnings.filterwarnings("ignore", message="Slicing a flattened dim from root mesh", category=UserWarning)

FLATTENED = {
    "dp": ("dp_replicate", "dp_shard"),
    "dp_shard_cp": ("dp_shard", "cp"),
    "dp_cp": ("dp_replicate", "dp_shard", "cp"),
}


def build_device_mesh(sizes: MeshSizes, device_type: str) -> DeviceMesh:
    """Create the 4-D mesh over every process of the default group.

    Dims are named ``dp_replicate``, ``dp_shard``, ``cp`` and ``tp`` (tp innermost, so a TP
    group sits on one node). Flattened dims are added for what spans several of them:
    ``dp`` (data loading), ``dp_shard_cp`` (what FSDP2 shards over) and ``dp_cp`` (where
    label tokens and losses are summed). Every rank must call it together.

    Args:
        sizes: from ``resolve_sizes``; their product must equal the world size.
        device_type: ``cuda`` or ``cpu``.

    Returns:
        The DeviceMesh; index it by any of the names above.
    """
    mesh = init_device_mesh(
        device_type, (sizes.dp_replicate, sizes.dp_shard, sizes.cp, sizes.tp), mesh_dim_names=MESH_DIMS
    )
    for name, dims in FLATTENED.items():
        mesh[dims]._flatten(mesh_dim_name=name)
    return mesh


def data_parallel_coordinates(mesh: DeviceMesh | None) -> tuple[int, int]:
    """Return ``(dp_rank, dp_size)``: which data shard this process reads and how many there are ((0, 1) alone)."""
    if mesh is None:
        return 0, 1
    dp = mesh["dp"]
    return dp.get_local_rank(), dp.size()


def loss_reduction_size(mesh: DeviceMesh | None) -> int:
    """Return how many ranks see different tokens (dp x cp): the factor FSDP2 and DDP average gradients over."""
    return 1 if mesh is None else mesh["dp_cp"].size()


def sum_over_data_parallel(mesh: DeviceMesh | None) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """Return a function that sums a tensor over the ranks that see different tokens (``dp_cp``), or None alone.

    The training step hands it the label-token count and the loss, so normalization counts
    every token of the global batch once (TP ranks, which share their tokens, are not added).
    """
    if mesh is None or mesh["dp_cp"].size() == 1:
        return None
    group = mesh["dp_cp"].get_group()

    def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
        total = tensor.clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM, group=group)
        return total

    return all_reduce_sum
