"""Choosing hard negatives among each query's nearest passages: the filters and the sampling.

The rules are sentence-transformers' ``mine_hard_negatives`` (so the same model and data give
the same negatives), on any device: a candidate is dropped when it is the query itself, one of
the query's positives, within ``absolute_margin`` of the query's lowest positive score, above
``positive - |positive| * relative_margin`` (sign-safe for negative similarities), above
``max_score`` or below ``min_score``; the best ``range_max`` survivors are kept, the first
``range_min`` skipped, and ``num_negatives`` taken from the top or at random.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

SAMPLING = ("top", "random")


@dataclass(frozen=True)
class MiningSettings:
    """What ``mining:`` says about choosing negatives (see the module docstring)."""

    num_negatives: int = 3
    range_min: int = 0
    range_max: int | None = None
    sampling_strategy: str = "top"
    max_score: float | None = None
    min_score: float | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None

    def candidate_range(self, max_positives: int, rescored: bool) -> int:
        """``range_max``, or upstream's default: room for 10 candidates per negative when a filter may drop some."""
        if self.range_max is not None:
            return self.range_max
        filtering = (
            self.absolute_margin is not None
            or self.relative_margin is not None
            or self.max_score is not None
            or (rescored and self.min_score is not None)
        )
        return self.range_min + self.num_negatives * (10 if filtering else 1) + max_positives

    def problem(self, range_max: int) -> str | None:
        """What is wrong with the settings for ``range_max`` candidates, or None."""
        if self.sampling_strategy not in SAMPLING:
            return f"sampling_strategy must be one of {', '.join(SAMPLING)}, not {self.sampling_strategy!r}"
        if self.range_min >= range_max:
            return f"range_min ({self.range_min}) must be smaller than range_max ({range_max})"
        if self.num_negatives > range_max - self.range_min:
            return (
                f"cannot take {self.num_negatives} negatives from the {range_max - self.range_min} candidates "
                f"between range_min ({self.range_min}) and range_max ({range_max})"
            )
        return None


def filter_candidates(
    scores: torch.Tensor,
    indices: torch.Tensor,
    lowest_positive: torch.Tensor,
    positives: list[set[int]],
    query_in_corpus: list[int],
    settings: MiningSettings,
) -> torch.Tensor:
    """Return ``scores`` [Q, C] with every candidate a rule drops set to -inf.

    Args:
        scores, indices: each query's candidates (corpus rows, -1 for none) and their scores.
        lowest_positive: [Q] each query's lowest positive score.
        positives: each query's positive corpus rows.
        query_in_corpus: the corpus row holding each query's own text, or -1.
        settings: the filters.
    """
    scores = scores.clone()
    scores[indices < 0] = -float("inf")
    own = torch.tensor(query_in_corpus, device=indices.device).unsqueeze(1)
    scores[(indices == own) & (own >= 0)] = -float("inf")
    for row, wanted in enumerate(positives):
        hits = torch.tensor([int(i) in wanted for i in indices[row].tolist()], device=scores.device)
        scores[row, hits] = -float("inf")
    bound = lowest_positive.unsqueeze(1)
    if settings.absolute_margin is not None:
        scores[scores + settings.absolute_margin > bound] = -float("inf")
    if settings.relative_margin is not None:
        scores[scores > bound - bound.abs() * settings.relative_margin] = -float("inf")
    if settings.max_score is not None:
        scores[scores > settings.max_score] = -float("inf")
    if settings.min_score is not None:
        scores[(scores < settings.min_score) & ~scores.isinf()] = -float("inf")
    return scores


def choose_negatives(
    scores: torch.Tensor, indices: torch.Tensor, settings: MiningSettings, range_max: int, rng: random.Random
) -> list[list[tuple[int, float]]]:
    """Return each query's negatives as ``(corpus row, score)``, best first, from its filtered candidates.

    A query whose surviving candidates are fewer than ``num_negatives`` gets only those.
    """
    k = min(range_max, scores.shape[1])
    best, local = torch.topk(scores, k=k, dim=1)
    rows = torch.gather(indices, 1, local)
    best, rows = best[:, settings.range_min :], rows[:, settings.range_min :]
    chosen = []
    for row_scores, row_indices in zip(best.tolist(), rows.tolist(), strict=True):
        alive = [(i, s) for i, s in zip(row_indices, row_scores, strict=True) if s != -float("inf")]
        if settings.sampling_strategy == "top":
            picked = alive[: settings.num_negatives]
        else:
            picked = sorted(rng.sample(alive, k=min(settings.num_negatives, len(alive))), key=lambda p: -p[1])
        chosen.append(picked)
    return chosen
