"""Cross-encoder (reranker) losses over groups of (query, passage) logits, the positive first in each group.

The logits ``[B*G]`` (or ``[B*G, 1]``, a classifier's output) are grouped per query like the
passages of InfoNCELoss: rows ``i*G .. i*G+G-1`` score query i with its positive, then its G-1
hard negatives. Each loss sums over the local groups and divides by ``num_queries``, the
queries of the whole optimizer step (all micro-batches, all data-parallel ranks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from automodel.training.errors import TrainingError
from automodel.training.retrieval_checks import check_group_size, check_temperature, step_divisor


def group_logits(logits: torch.Tensor, group_size: int) -> torch.Tensor:
    """Return ``logits [B*G]`` or ``[B*G, 1]`` as ``[B, G]`` in fp32 (at least), one row per query."""
    group_size = check_group_size(group_size)
    if logits.dim() == 2 and logits.shape[1] == 1:
        logits = logits[:, 0]
    if logits.dim() != 1 or logits.shape[0] % group_size:
        raise TrainingError(
            f"reranker logits of shape {tuple(logits.shape)} cannot be split into groups of {group_size}: they must "
            "be one score per (query, passage) pair, [B * group_size] or [B * group_size, 1], grouped per query "
            "with the positive first. Use a model with one output label, or fix group_size."
        )
    return logits.reshape(-1, group_size).to(torch.promote_types(logits.dtype, torch.float32))


class RerankBCELoss(torch.nn.Module):
    """Binary cross-entropy with logits over every (query, passage) pair.

    Call with ``(logits [B*G] or [B*G, 1], group_size, *, labels=None, num_queries=None)``. The
    labels are 1 for each group's first passage and 0 for the rest unless ``labels`` (one value
    in [0, 1] per pair) are given. Returns the sum over the local groups of each group's mean
    pair loss, divided by ``num_queries`` (default B): the mean pair loss over the step.
    """

    def forward(
        self,
        logits: torch.Tensor,
        group_size: int,
        *,
        labels: torch.Tensor | None = None,
        num_queries: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Return the pairwise BCE loss of grouped reranker logits (see the class)."""
        scores = group_logits(logits, group_size)
        if labels is None:
            targets = torch.zeros_like(scores)
            targets[:, 0] = 1.0
        elif labels.numel() != scores.numel():
            raise TrainingError(
                f"RerankBCELoss got {labels.numel()} labels for {scores.numel()} logits; give one label per "
                "(query, passage) pair in the logits' order, or none for 1 on each group's first passage."
            )
        else:
            targets = labels.reshape(scores.shape).to(scores.dtype)
        pair_losses = F.binary_cross_entropy_with_logits(scores, targets, reduction="none")
        return pair_losses.mean(dim=1).sum() / step_divisor(num_queries, scores.shape[0])


class ListwiseSoftmaxLoss(torch.nn.Module):
    """Softmax cross-entropy over each group's logits, the positive (index 0) the target.

    Call with ``(logits [B*G] or [B*G, 1], group_size, *, num_queries=None)``; the logits are
    divided by ``temperature`` first. Returns the summed per-group loss divided by
    ``num_queries`` (default B).
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_temperature(temperature)

    def forward(
        self, logits: torch.Tensor, group_size: int, *, num_queries: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the listwise softmax loss of grouped reranker logits (see the class)."""
        scores = group_logits(logits, group_size) / self.temperature
        targets = torch.zeros(scores.shape[0], dtype=torch.long, device=scores.device)
        return F.cross_entropy(scores, targets, reduction="sum") / step_divisor(num_queries, scores.shape[0])
