"""Checks of diffusion settings that raise TrainingError with the setting's name and allowed values."""

from __future__ import annotations

from collections.abc import Sequence

from automodel.training.errors import TrainingError


def check_choice(setting: str, value: str, allowed: Sequence[str]) -> None:
    """Raise TrainingError unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise TrainingError(f"{setting} must be one of {', '.join(allowed)}; got {value!r}.")


def check_positive(setting: str, value: float) -> None:
    """Raise TrainingError unless ``value`` is above 0."""
    if not value > 0:
        raise TrainingError(f"{setting} must be above 0, got {value}.")


def check_probability(setting: str, value: float) -> None:
    """Raise TrainingError unless ``value`` lies in [0, 1]."""
    if not 0.0 <= value <= 1.0:
        raise TrainingError(f"{setting} must be a probability in [0, 1], got {value}.")
