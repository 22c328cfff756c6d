"""Evaluation passes of text encoders: argument checks, token limit, the tokenizer outputs a model takes, eval mode."""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch

from automodel.models.errors import ModelError

# Tokenizer outputs an encoder may take; others are dropped, and token_type_ids when its forward has no such argument.
_TOKENIZER_OUTPUTS = ("input_ids", "attention_mask", "token_type_ids")


def check_positive_int(value: Any, name: str, *, optional: bool = False) -> int | None:
    """Return ``value`` when it is a positive int (or None when ``optional``); else raise ModelError naming ``name``."""
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        allowed = "a positive integer or null" if optional else "a positive integer"
        raise ModelError(f"{name} must be {allowed}, got {value!r}.")
    return value


def token_limit(tokenizer: Any, config: Any, *given: int | None) -> int | None:
    """Return the token limit to truncate to.

    Args:
        tokenizer: a transformers tokenizer.
        config: the model's transformers config.
        *given: limits in order of preference (an argument, the model's ``max_seq_length``); None ones are skipped.

    Returns:
        The first given limit that is not None, else the tokenizer's ``model_max_length`` capped at the
        config's ``max_position_embeddings`` (as sentence-transformers does), else None.
    """
    for limit in given:
        if limit is not None:
            return limit
    limits = [getattr(tokenizer, "model_max_length", None), getattr(config, "max_position_embeddings", None)]
    limits = [limit for limit in limits if isinstance(limit, int) and limit > 0]
    return min(limits) if limits else None


def model_inputs(batch: Mapping[str, Any], forward: Callable[..., Any], device: torch.device) -> dict[str, Any]:
    """Return the tokenizer outputs of ``batch`` that ``forward`` takes, moved to ``device``.

    Args:
        batch: what a tokenizer returned (``return_tensors="pt"``).
        forward: the transformers model's forward; ``token_type_ids`` is kept only when it names it.
        device: where the model runs.

    Returns:
        ``input_ids``, ``attention_mask`` and, where taken, ``token_type_ids``.
    """
    takes_types = "token_type_ids" in inspect.signature(forward).parameters
    keys = [key for key in _TOKENIZER_OUTPUTS if key in batch and (key != "token_type_ids" or takes_types)]
    return {key: batch[key].to(device) for key in keys}


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[torch.device]:
    """Put ``model`` in eval mode without gradients inside the block, then restore its train/eval mode.

    Args:
        model: any torch module with at least one parameter.

    Returns:
        A context manager yielding the device of the model's first parameter.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next(model.parameters()).device
    finally:
        model.train(was_training)
