"""Argument checks shared by the retrieval losses: group size, temperature, embedding shapes, the step's divisor."""

from __future__ import annotations

from typing import Any

import torch

from automodel.training.errors import TrainingError


def check_group_size(group_size: Any) -> int:
    """Return ``group_size`` (passages per query: one positive, then hard negatives) once it is a positive int."""
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise TrainingError(
            f"group_size is {group_size!r}, but it must be a whole number of at least 1: the passages per query "
            "(its positive first, then its hard negatives). Set it to 1 + the number of hard negatives per query."
        )
    return group_size


def check_temperature(temperature: Any) -> float | torch.Tensor:
    """Return ``temperature`` as a float once it is a positive number; a tensor (a learnable one) is returned as is.

    A tensor is not checked, since reading its value would wait for the GPU at every step.
    """
    if isinstance(temperature, torch.Tensor):
        if temperature.numel() != 1:
            raise TrainingError(
                f"temperature is a tensor of shape {tuple(temperature.shape)}, but it must hold one value; pass a "
                "scalar tensor (for a learnable temperature, e.g. log_scale.exp() of a one-element parameter)."
            )
        return temperature.reshape(())
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise TrainingError(
            f"temperature is {temperature!r}, but it must be a number above 0: similarities are divided by it "
            "(0.05 is usual for cosine similarity, i.e. a scale of 20). Set a positive temperature."
        )
    return float(temperature)


def check_embeddings(q: torch.Tensor, p: torch.Tensor, group_size: Any) -> int:
    """Check that ``q [B, D]`` and ``p [B * group_size, D]`` fit together and return the group size."""
    group_size = check_group_size(group_size)
    if q.dim() != 2 or p.dim() != 2 or q.shape[1] != p.shape[1]:
        raise TrainingError(
            f"query embeddings {tuple(q.shape)} and passage embeddings {tuple(p.shape)} do not fit: both must be "
            "2-D [rows, dim] with the same dim. Pool each text to one vector before the loss."
        )
    if p.shape[0] != q.shape[0] * group_size:
        raise TrainingError(
            f"{q.shape[0]} queries with group_size {group_size} need {q.shape[0] * group_size} passage rows, "
            f"but there are {p.shape[0]}. Give every query exactly group_size passages (its positive first, then "
            "its hard negatives), grouped per query, or fix group_size."
        )
    return group_size


def step_divisor(num_queries: Any, local_queries: int) -> Any:
    """Return what a summed loss is divided by: ``num_queries`` (the whole step's queries) or, when None, this batch's.

    ``num_queries`` is an int or a tensor (a count summed over data-parallel ranks).
    """
    if num_queries is None:
        return max(local_queries, 1)
    if not isinstance(num_queries, torch.Tensor) and (isinstance(num_queries, bool) or not num_queries >= 1):
        raise TrainingError(
            f"num_queries is {num_queries!r}, but it must be at least 1: the number of queries in the whole "
            "optimizer step (every micro-batch, every data-parallel rank). Leave it None for this batch's count."
        )
    return num_queries
