"""InfoNCE, the contrastive loss of bi-encoder retrieval, over in-batch, hard and cross-device negatives.

A batch holds B query embeddings ``q [B, D]`` and passage embeddings ``p [B*G, D]`` grouped per
query: rows ``i*G .. i*G+G-1`` are query i's positive, then its G-1 hard negatives (G =
``group_size``). Each query's target is its own positive; every other passage of the batch
(other queries' positives, all hard negatives) is a negative. The loss sums the queries'
cross-entropies and divides by ``num_queries``, the queries of the whole optimizer step (all
micro-batches, all data-parallel ranks), so accumulation and a data-parallel wrapper that sums
gradients give the gradient of one big batch.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from automodel.training.errors import TrainingError
from automodel.training.retrieval_checks import check_embeddings, check_temperature, step_divisor

SIMILARITIES = ("cosine", "dot")


def spans_ranks(process_group: Any = None) -> bool:
    """Return whether torch.distributed is initialised with more than one rank in ``process_group`` (default: all)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(process_group) > 1


def gather_with_grad(tensor: torch.Tensor, process_group: Any = None) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank of ``process_group`` in rank order, gradients flowing back to each rank.

    Every rank must hold the same shape (a TrainingError on every rank otherwise). The backward
    pass sums, for each rank's slice, the gradients that all ranks computed for it.
    """
    group = dist.group.WORLD if process_group is None else process_group
    shape = torch.tensor(tensor.shape, device=tensor.device)
    shapes = [torch.empty_like(shape) for _ in range(dist.get_world_size(group))]
    dist.all_gather(shapes, shape, group=group)
    if any(not torch.equal(other, shape) for other in shapes):
        raise TrainingError(
            f"cross_device_negatives needs the same batch on every rank, but the ranks hold embeddings of shapes "
            f"{[tuple(s.tolist()) for s in shapes]}. Give every rank the same number of queries and passages per "
            "step (drop the last uneven batch), or turn cross_device_negatives off."
        )
    from torch.distributed.nn.functional import all_gather

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # deprecated for torch._functional_collectives
        parts = all_gather(tensor, group=group)
    return torch.cat(parts)


def _prepare(embeddings: torch.Tensor, similarity: str) -> torch.Tensor:
    """Upcast to fp32 at least and, for cosine similarity, scale each row to unit length."""
    embeddings = embeddings.to(torch.promote_types(embeddings.dtype, torch.float32))
    return F.normalize(embeddings, dim=-1) if similarity == "cosine" else embeddings


class InfoNCELoss(torch.nn.Module):
    """Softmax cross-entropy of each query over every passage of the batch, its positive the target.

    Args:
        temperature: similarities are divided by it (sentence-transformers' ``scale`` is 1 / temperature).
        symmetric: also score each positive against every query (passage to query) and average the two
            directions, as sentence-transformers' MultipleNegativesSymmetricRankingLoss does.
        cross_device_negatives: when torch.distributed runs more than one rank, gather every rank's
            passages (and queries, when symmetric) with their gradients, so the local queries meet every
            rank's passages as negatives. Every rank must hold the same batch shape.
        similarity: ``"cosine"`` (unit-length embeddings) or ``"dot"``.

    Call with ``(q [B, D], p [B*G, D], group_size, *, num_queries=None, temperature=None,
    process_group=None)``; returns the summed per-query loss divided by ``num_queries`` (default B).
    A ``temperature`` tensor (a learnable one) given to the call replaces the constructor's.
    """

    def __init__(
        self,
        temperature: float = 0.05,
        symmetric: bool = False,
        cross_device_negatives: bool = False,
        similarity: str = "cosine",
    ) -> None:
        super().__init__()
        if similarity not in SIMILARITIES:
            raise TrainingError(
                f"similarity is {similarity!r}, but InfoNCELoss knows {' and '.join(map(repr, SIMILARITIES))}; "
                "use 'cosine' for normalised embeddings (the usual choice) or 'dot' for raw inner products."
            )
        self.temperature = check_temperature(temperature)
        self.symmetric = symmetric
        self.cross_device_negatives = cross_device_negatives
        self.similarity = similarity

    def forward(
        self,
        q: torch.Tensor,
        p: torch.Tensor,
        group_size: int,
        *,
        num_queries: int | torch.Tensor | None = None,
        temperature: float | torch.Tensor | None = None,
        process_group: Any = None,
    ) -> torch.Tensor:
        """Return the InfoNCE loss of queries ``q [B, D]`` over passages ``p [B*group_size, D]`` (see the class)."""
        group_size = check_embeddings(q, p, group_size)
        temperature = self.temperature if temperature is None else check_temperature(temperature)
        q, p = _prepare(q, self.similarity), _prepare(p, self.similarity)
        batch = q.shape[0]
        all_q, all_p, rank = q, p, 0
        if self.cross_device_negatives and spans_ranks(process_group):
            rank = dist.get_rank(process_group)
            all_p = gather_with_grad(p, process_group)
            if self.symmetric:
                all_q = gather_with_grad(q, process_group)
        rows = torch.arange(batch, device=q.device)
        positives = rows * group_size
        total = F.cross_entropy(q @ all_p.T / temperature, positives + rank * p.shape[0], reduction="sum")
        if self.symmetric:
            backward = F.cross_entropy(p[positives] @ all_q.T / temperature, rows + rank * batch, reduction="sum")
            total = (total + backward) / 2
        return total / step_divisor(num_queries, batch)
