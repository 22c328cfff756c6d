"""RerankBCELoss and ListwiseSoftmaxLoss against pair-by-pair references."""

from __future__ import annotations

import math

import pytest
import torch

from automodel.training import ListwiseSoftmaxLoss, RerankBCELoss, TrainingError


def logits(groups=4, group_size=3, seed=0):
    return torch.randn(groups * group_size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def reference_bce(values, group_size, labels=None, num_queries=None):
    """Binary cross-entropy written out pair by pair, averaged within each group, summed over groups."""
    groups = len(values) // group_size
    total = 0.0
    for g in range(groups):
        for j in range(group_size):
            x = float(values[g * group_size + j])
            y = float(labels[g * group_size + j]) if labels is not None else float(j == 0)
            probability = 1 / (1 + math.exp(-x))
            total += -(y * math.log(probability) + (1 - y) * math.log(1 - probability)) / group_size
    return total / (num_queries or groups)


def reference_listwise(values, group_size, temperature, num_queries=None):
    groups = len(values) // group_size
    total = 0.0
    for g in range(groups):
        row = [float(v) / temperature for v in values[g * group_size : (g + 1) * group_size]]
        total += math.log(sum(math.exp(v) for v in row)) - row[0]
    return total / (num_queries or groups)


@pytest.mark.parametrize("column", [False, True])
def test_bce_matches_the_pair_reference(column) -> None:
    values = logits()
    given = values[:, None] if column else values
    assert float(RerankBCELoss()(given, 3)) == pytest.approx(reference_bce(values, 3), abs=1e-12)
    labels = torch.tensor([1.0, 0.0, 1.0, 0.5, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.2, 0.0])
    assert float(RerankBCELoss()(given, 3, labels=labels)) == pytest.approx(reference_bce(values, 3, labels), abs=1e-12)
    assert float(RerankBCELoss()(given, 3, num_queries=10)) == pytest.approx(
        reference_bce(values, 3, num_queries=10), abs=1e-12
    )


def test_listwise_matches_the_softmax_reference_and_splits_exactly() -> None:
    values = logits(group_size=4)
    loss_fn = ListwiseSoftmaxLoss(temperature=0.5)
    assert float(loss_fn(values, 4)) == pytest.approx(reference_listwise(values, 4, 0.5), abs=1e-12)
    halves = loss_fn(values[:8], 4, num_queries=4) + loss_fn(values[8:], 4, num_queries=4)
    assert float(halves) == pytest.approx(float(loss_fn(values, 4)), abs=1e-12)


def test_bf16_logits_are_scored_in_fp32() -> None:
    values = logits().bfloat16()
    assert RerankBCELoss()(values, 3).dtype == ListwiseSoftmaxLoss()(values, 3).dtype == torch.float32


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: RerankBCELoss()(logits(), 5), r"logits of shape \(12,\) cannot be split into groups of 5"),
        (lambda: RerankBCELoss()(logits().view(4, 3), 3), r"logits of shape \(4, 3\)"),
        (lambda: RerankBCELoss()(logits(), 3, labels=torch.ones(5)), "got 5 labels for 12 logits"),
        (lambda: ListwiseSoftmaxLoss(temperature=0.0), "temperature is 0.0"),
        (lambda: ListwiseSoftmaxLoss()(logits(), 0), "group_size is 0"),
    ],
)
def test_mistakes_are_training_errors(call, message) -> None:
    with pytest.raises(TrainingError, match=message):
        call()
