"""Rank functions for test_env_mesh: describe the device mesh each layout builds on two gloo processes."""

from __future__ import annotations

import torch
import torch.distributed as dist

from automodel.distributed.config import parse_distributed_config, resolve_sizes
from automodel.distributed.env import rank0_print
from automodel.distributed.mesh import (
    FLATTENED,
    MESH_DIMS,
    build_device_mesh,
    data_parallel_coordinates,
    loss_reduction_size,
    sum_over_data_parallel,
)


def describe_layouts(sections: list[dict], print_path: str) -> list[dict]:
    """Build the mesh of each ``distributed:`` section on this world; return its dim sizes and dp helpers.

    Every rank also calls ``rank0_print``, appending to the file at ``print_path``.
    """
    with open(print_path, "a", encoding="utf-8") as handle:
        rank0_print("hello from rank", dist.get_rank(), file=handle)
    described = []
    for section in sections:
        sizes = resolve_sizes(parse_distributed_config(section), dist.get_world_size())
        mesh = build_device_mesh(sizes, "cpu")
        summed = sum_over_data_parallel(mesh)
        value = torch.tensor([float(dist.get_rank() + 1)])
        described.append(
            {
                "dims": {name: mesh[name].size() for name in (*MESH_DIMS, *FLATTENED)},
                "coordinates": data_parallel_coordinates(mesh),
                "reduction_size": loss_reduction_size(mesh),
                "sum": None if summed is None else summed(value).item(),
                "unchanged": value.item(),
            }
        )
    return described


def fail_on_rank_one() -> int:
    """Return the rank on rank 0 and raise on rank 1 (to see run_on_ranks report it)."""
    rank = dist.get_rank()
    if rank == 1:
        raise ValueError("boom from rank 1")
    return rank
