"""Counting the parameters an optimizer will update."""

from __future__ import annotations

from torch import nn


def trainable_parameter_count(model: nn.Module) -> int:
    """Return the number of elements in the parameters of ``model`` that require grad (shared ones once)."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)
