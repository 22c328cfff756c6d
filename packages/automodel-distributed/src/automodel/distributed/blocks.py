"""Finding a model's transformer blocks: the units that FSDP2 shards and activation checkpointing recomputes."""

from __future__ import annotations

import torch


def transformer_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Return the model's repeated blocks, outermost first and in order.

    A Hugging Face model names its block classes in ``_no_split_modules`` (e.g.
    ``LlamaDecoderLayer``); other models count as blocks the children of their largest
    ``torch.nn.ModuleList``. Returns an empty list when neither exists.
    """
    names = set(getattr(model, "_no_split_modules", None) or ())
    if names:
        blocks = [m for m in model.modules() if type(m).__name__ in names]
        outermost = [b for b in blocks if not any(b is not o and _contains(o, b) for o in blocks)]
        if outermost:
            return outermost
    lists = [m for m in model.modules() if isinstance(m, torch.nn.ModuleList)]
    if not lists:
        return []
    return list(max(lists, key=len))


def _contains(outer: torch.nn.Module, inner: torch.nn.Module) -> bool:
    return any(m is inner for m in outer.modules())
