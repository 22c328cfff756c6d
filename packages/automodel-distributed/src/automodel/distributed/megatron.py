"""Megatron-FSDP (``strategy: megatron_fsdp``): NVIDIA's FSDP from the optional ``megatron-fsdp`` package, CUDA only.

The package is imported inside the functions, so automodel-distributed installs and
imports without it (``pip install 'automodel-distributed[megatron]'`` brings it).
"""

from __future__ import annotations

import importlib.util

import torch
from torch.distributed.device_mesh import DeviceMesh

from automodel.distributed.blocks import transformer_blocks
from automodel.distributed.config import DistributedConfig, torch_dtype
from automodel.distributed.errors import DistributedError


def _require_megatron_fsdp() -> None:
    if importlib.util.find_spec("megatron_fsdp") is None:
        raise DistributedError(
            "distributed.strategy megatron_fsdp needs the megatron-fsdp package, which is not installed; "
            "pip install 'automodel-distributed[megatron]' or use strategy: fsdp2"
        )
    if not torch.cuda.is_available():
        raise DistributedError(
            "distributed.strategy megatron_fsdp runs on CUDA GPUs only and none is visible; use strategy: fsdp2"
        )


def _check_options(config: DistributedConfig) -> None:
    if config.cpu_offload:
        raise DistributedError(
            "distributed.cpu_offload is an FSDP2 option that megatron_fsdp does not have; "
            "remove cpu_offload or use strategy: fsdp2"
        )
    if config.mixed_precision.output_dtype is not None:
        raise DistributedError(
            "distributed.mixed_precision.output_dtype is an FSDP2 option that megatron_fsdp does not have; "
            "remove it or use strategy: fsdp2"
        )


def _unit_classes(model: torch.nn.Module) -> list[type[torch.nn.Module]]:
    """The distinct classes of the model's transformer blocks, in order of first appearance."""
    return list(dict.fromkeys(type(block) for block in transformer_blocks(model)))


def _cast_parameters(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Store every floating parameter in ``dtype`` (buffers such as rotary frequencies keep theirs)."""
    for param in model.parameters():
        if param.is_floating_point():
            param.data = param.data.to(dtype)


def apply_megatron_fsdp(model: torch.nn.Module, mesh: DeviceMesh, config: DistributedConfig) -> torch.nn.Module:
    """Shard ``model`` with Megatron-FSDP (ZeRO-3) over the ``dp_shard_cp`` dim, each transformer block one unit.

    With ``dp_replicate_size > 1`` the shards are replicated over ``dp_replicate`` (HSDP).
    ``mixed_precision.param_dtype`` is the compute dtype the parameters are cast to (fp32
    master weights are kept for the optimizer); ``reduce_dtype`` is the dtype gradients
    are kept and reduced in. ``reshard_after_forward: false`` keeps the parameters whole
    (ZeRO-2: only gradients and optimizer state are sharded). Gradients are summed over
    ranks, not averaged, as with FSDP2 and DDP. The optimizer must be built on the
    returned model's parameters and passed through ``prepare_megatron_optimizer``.

    Args:
        model: the model (after TP, PEFT and activation checkpointing); it is moved to this rank's GPU.
        mesh: the CUDA device mesh from ``build_device_mesh``.
        config: the ``distributed:`` settings.

    Returns:
        The MegatronFSDP wrapper (the model is its ``module`` attribute).

    Raises:
        DistributedError: no megatron-fsdp package, no CUDA, or an FSDP2-only option.
    """
    _require_megatron_fsdp()
    _check_options(config)
    import megatron_fsdp

    precision = config.mixed_precision
    param_dtype = torch_dtype(precision.param_dtype, "distributed.mixed_precision.param_dtype")
    reduce_dtype = torch_dtype(precision.reduce_dtype, "distributed.mixed_precision.reduce_dtype")
    if param_dtype is not None:
        _cast_parameters(model, param_dtype)
    hybrid = mesh["dp_replicate"].size() > 1
    return megatron_fsdp.fully_shard_model(
        module=model,
        device_mesh=mesh,
        dp_shard_dim="dp_shard_cp",
        dp_outer_dim="dp_replicate" if hybrid else None,
        tp_dim="tp",
        hybrid_fsdp_group=mesh["dp_cp"].get_group() if hybrid else None,
        fsdp_unit_modules=_unit_classes(model),
        zero_dp_strategy="optim_grads_params" if config.reshard_after_forward else "optim_grads",
        device=torch.device("cuda", torch.cuda.current_device()),
        mixed_precision_policy=megatron_fsdp.MixedPrecisionPolicy(
            main_params_dtype=torch.float32, main_grads_dtype=reduce_dtype, grad_comm_dtype=reduce_dtype
        ),
        calculate_per_token_loss=True,
    )


def prepare_megatron_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Make an optimizer over a Megatron-FSDP model's parameters step the sharded weights; return it.

    After this, ``optimizer.step()`` waits for the gradient reduction, updates the fp32
    shards and copies them into the compute weights, and ``zero_grad()`` also clears
    Megatron-FSDP's gradient buffer. It initializes the optimizer state with one step on
    zero gradients, as Megatron-FSDP requires.

    Args:
        optimizer: built on the parameters of the model ``apply_megatron_fsdp`` returned.

    Returns:
        The same optimizer, changed in place.

    Raises:
        DistributedError: no megatron-fsdp package or no CUDA.
    """
    _require_megatron_fsdp()
    import megatron_fsdp

    return megatron_fsdp.fully_shard_optimizer(optimizer)
