"""Learning-rate schedules as LambdaLR factories, usable as ``lr_scheduler: {_target_: ...}``.

Each takes the optimizer and ``total_steps`` (the recipe passes both at run time) and
returns a ``torch.optim.lr_scheduler.LambdaLR`` whose factor multiplies each group's lr.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from automodel.training.errors import TrainingError


def _check(total_steps: int, warmup_steps: int, min_lr_ratio: float) -> None:
    if total_steps < 1:
        raise TrainingError(f"lr_scheduler: total_steps must be at least 1, got {total_steps}")
    if not 0 <= warmup_steps <= total_steps:
        raise TrainingError(
            f"lr_scheduler.warmup_steps must be between 0 and total_steps ({total_steps}), got {warmup_steps}"
        )
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise TrainingError(f"lr_scheduler.min_lr_ratio must be between 0 and 1, got {min_lr_ratio}")


def _warmup(step: int, warmup_steps: int) -> float | None:
    return (step + 1) / warmup_steps if step < warmup_steps else None


def _decay(shape: str) -> Callable[[float], float]:
    shapes = {
        "cosine": lambda p: 0.5 * (1.0 + math.cos(math.pi * p)),
        "linear": lambda p: 1.0 - p,
        "sqrt": lambda p: 1.0 - math.sqrt(p),
    }
    if shape not in shapes:
        raise TrainingError(f"lr_scheduler.decay_type must be one of {sorted(shapes)}, got {shape!r}")
    return shapes[shape]


def _with_decay(optimizer: Optimizer, total_steps: int, warmup_steps: int, min_lr_ratio: float, shape: str) -> LambdaLR:
    _check(total_steps, warmup_steps, min_lr_ratio)
    decay = _decay(shape)

    def factor(step: int) -> float:
        warm = _warmup(step, warmup_steps)
        if warm is not None:
            return warm
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_lr_ratio + (1.0 - min_lr_ratio) * decay(progress)

    return LambdaLR(optimizer, factor)


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio`` x lr at ``total_steps``."""
    return _with_decay(optimizer, total_steps, warmup_steps, min_lr_ratio, "cosine")


def warmup_linear(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, min_lr_ratio: float = 0.0) -> LambdaLR:
    """Linear warmup, then linear decay to ``min_lr_ratio`` x lr at ``total_steps``."""
    return _with_decay(optimizer, total_steps, warmup_steps, min_lr_ratio, "linear")


def constant(optimizer: Optimizer, total_steps: int = 1, warmup_steps: int = 0) -> LambdaLR:
    """Linear warmup over ``warmup_steps``, then the optimizer's lr unchanged."""
    _check(max(total_steps, warmup_steps, 1), warmup_steps, 0.0)
    return LambdaLR(optimizer, lambda step: _warmup(step, warmup_steps) or 1.0)


def wsd(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: int = 0,
    decay_ratio: float = 0.1,
    min_lr_ratio: float = 0.0,
    decay_type: str = "linear",
) -> LambdaLR:
    """Warmup-stable-decay: warmup, hold the peak lr, then decay over the last ``decay_ratio`` of the steps.

    ``decay_type`` is ``linear``, ``cosine`` or ``sqrt`` (1 - sqrt(progress)).
    """
    _check(total_steps, warmup_steps, min_lr_ratio)
    if not 0.0 <= decay_ratio <= 1.0:
        raise TrainingError(f"lr_scheduler.decay_ratio must be between 0 and 1, got {decay_ratio}")
    decay = _decay(decay_type)
    decay_steps = round(total_steps * decay_ratio)
    decay_start = max(warmup_steps, total_steps - decay_steps)

    def factor(step: int) -> float:
        warm = _warmup(step, warmup_steps)
        if warm is not None:
            return warm
        if step < decay_start:
            return 1.0
        progress = min(1.0, (step - decay_start) / max(1, total_steps - decay_start))
        return min_lr_ratio + (1.0 - min_lr_ratio) * decay(progress)

    return LambdaLR(optimizer, factor)
