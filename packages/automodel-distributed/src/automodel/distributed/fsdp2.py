"""FSDP2: ``fully_shard`` each transformer block, then the root, over ``dp_shard_cp`` (and ``dp_replicate``)."""

from __future__ import annotations

import torch
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import CPUOffloadPolicy, FSDPModule, MixedPrecisionPolicy, fully_shard

from automodel.distributed.blocks import transformer_blocks
from automodel.distributed.config import DistributedConfig, torch_dtype


def mixed_precision_policy(config: DistributedConfig) -> MixedPrecisionPolicy:
    """Return FSDP2's MixedPrecisionPolicy for ``distributed.mixed_precision`` (fp32 gradient reduction by default)."""
    precision = config.mixed_precision
    return MixedPrecisionPolicy(
        param_dtype=torch_dtype(precision.param_dtype, "distributed.mixed_precision.param_dtype"),
        reduce_dtype=torch_dtype(precision.reduce_dtype, "distributed.mixed_precision.reduce_dtype"),
        output_dtype=torch_dtype(precision.output_dtype, "distributed.mixed_precision.output_dtype"),
        cast_forward_inputs=True,
    )


def fsdp_mesh(mesh: DeviceMesh) -> DeviceMesh:
    """The mesh FSDP2 works over: 2-D ``(dp_replicate, dp_shard_cp)`` for HSDP, else 1-D ``dp_shard_cp``."""
    if mesh["dp_replicate"].size() > 1:
        return mesh["dp_replicate", "dp_shard_cp"]
    return mesh["dp_shard_cp"]


def apply_fsdp2(model: torch.nn.Module, mesh: DeviceMesh, config: DistributedConfig) -> torch.nn.Module:
    """Shard ``model`` with FSDP2 in place: each transformer block is one unit, the root holds the rest.

    Gradients are summed over ranks, not averaged (divide factor 1): the training step
    already divides each loss by the label tokens of the whole global batch.

    Args:
        model: the model, on its device (after TP, PEFT and activation checkpointing).
        mesh: the device mesh from ``build_device_mesh``.
        config: the ``distributed:`` settings (mixed precision, reshard_after_forward, cpu_offload).

    Returns:
        The same module, now an FSDPModule with DTensor parameters.
    """
    options = {
        "mesh": fsdp_mesh(mesh),
        "mp_policy": mixed_precision_policy(config),
        "offload_policy": CPUOffloadPolicy() if config.cpu_offload else None,
    }
    options = {key: value for key, value in options.items() if value is not None}
    blocks = transformer_blocks(model)
    for index, block in enumerate(blocks):
        last = index == len(blocks) - 1
        fully_shard(block, reshard_after_forward=config.reshard_after_forward and not last, **options)
    fully_shard(model, reshard_after_forward=False, **options)
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.set_gradient_divide_factor(1.0)
            if hasattr(module, "set_force_sum_reduction_for_comms"):  # newer torch; a plain SUM gloo supports too
                module.set_force_sum_reduction_for_comms(True)
    return model


def reshard_model(model: torch.nn.Module) -> None:
    """Free the gathered parameters FSDP2 keeps after a forward with no backward (validation, generation).

    Without it, modules with ``reshard_after_forward=False`` (the root, the last block) stay
    unsharded, and their parameters read as plain tensors instead of DTensor shards.
    Does nothing to a model without FSDP2 modules.
    """
    for module in model.modules():
        if isinstance(module, FSDPModule):
            module.reshard()
