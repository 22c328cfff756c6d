"""LR schedules: warmup, cosine / linear decay to a floor, constant, warmup-stable-decay."""

from __future__ import annotations

import itertools

import pytest
import torch

from automodel.training import TrainingError, constant, warmup_cosine, warmup_linear, wsd


def _lrs(factory, steps: int, **kwargs) -> list[float]:
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    scheduler = factory(optimizer, **kwargs)
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return lrs


def test_warmup_cosine_rises_linearly_then_decays_to_the_floor():
    lrs = _lrs(warmup_cosine, 12, total_steps=12, warmup_steps=4, min_lr_ratio=0.1)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(a >= b for a, b in itertools.pairwise(lrs[3:]))
    assert lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + __import__("math").cos(__import__("math").pi * 7 / 8)))
    assert _lrs(warmup_cosine, 30, total_steps=10, min_lr_ratio=0.1)[-1] == pytest.approx(0.1)


def test_warmup_linear_decays_linearly():
    lrs = _lrs(warmup_linear, 5, total_steps=4, warmup_steps=0, min_lr_ratio=0.0)
    assert lrs == pytest.approx([1.0, 0.75, 0.5, 0.25, 0.0])


def test_constant_holds_the_lr_after_warmup():
    assert _lrs(constant, 5, warmup_steps=2) == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])


def test_wsd_holds_the_peak_then_decays_over_the_last_part():
    lrs = _lrs(wsd, 10, total_steps=10, warmup_steps=2, decay_ratio=0.4, min_lr_ratio=0.0)
    assert lrs[:2] == pytest.approx([0.5, 1.0])
    assert lrs[2:6] == pytest.approx([1.0] * 4)
    assert lrs[6:] == pytest.approx([1.0, 0.75, 0.5, 0.25])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"total_steps": 0}, "total_steps must be at least 1"),
        ({"total_steps": 10, "warmup_steps": 11}, "warmup_steps must be between 0 and total_steps"),
        ({"total_steps": 10, "min_lr_ratio": 1.5}, "min_lr_ratio must be between 0 and 1"),
    ],
)
def test_bad_schedule_settings_are_errors(kwargs, message):
    with pytest.raises(TrainingError, match=message):
        _lrs(warmup_cosine, 1, **kwargs)


def test_wsd_rejects_an_unknown_decay_type():
    with pytest.raises(TrainingError, match="decay_type must be one of"):
        _lrs(wsd, 1, total_steps=10, decay_type="exp")
