"""Activation checkpointing per transformer block: keep each block's input, recompute the rest in backward."""

from __future__ import annotations

import torch
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import apply_activation_checkpointing

from automodel.distributed.blocks import transformer_blocks
from automodel.distributed.errors import DistributedError


def checkpoint_blocks(model: torch.nn.Module) -> int:
    """Recompute every transformer block of ``model`` in the backward pass (non-reentrant); return how many.

    A Hugging Face model uses its own ``gradient_checkpointing_enable``, which keeps every
    parameter name (so adapters and checkpoints name tensors as without it); any other
    model gets torch's ``checkpoint_wrapper`` around each block. Call it before FSDP2.

    Raises:
        DistributedError: the model has no blocks to checkpoint.
    """
    blocks = transformer_blocks(model)
    if not blocks:
        raise DistributedError(
            f"distributed.activation_checkpointing found no transformer blocks in {type(model).__name__} "
            "(no _no_split_modules and no ModuleList); remove activation_checkpointing for this model"
        )
    if getattr(model, "supports_gradient_checkpointing", False):
        if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5 (the old name warns)
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return len(blocks)
    wanted = {id(b) for b in blocks}
    apply_activation_checkpointing(model, check_fn=lambda module: id(module) in wanted)
    return len(blocks)
