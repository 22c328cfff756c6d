"""The ``distributed:`` section: what it may hold, its defaults, and the checks that need no process group."""

from __future__ import annotations

import difflib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from automodel.distributed.errors import DistributedError

STRATEGIES = ("fsdp2", "ddp", "megatron_fsdp")
BACKENDS = ("nccl", "gloo")


@dataclass(frozen=True)
class MixedPrecision:
    """FSDP2's ``MixedPrecisionPolicy`` as dtype names.

    Attributes:
        param_dtype: dtype of the all-gathered parameters used in forward/backward (None: the model's own).
        reduce_dtype: dtype gradients are reduced in (float32 by default, so bf16 runs reduce in fp32).
        output_dtype: dtype the sharded modules' outputs are cast to (None: leave them).
    """

    param_dtype: str | None = None
    reduce_dtype: str | None = "float32"
    output_dtype: str | None = None


@dataclass(frozen=True)
class DistributedConfig:
    """A validated ``distributed:`` section.

    Attributes:
        strategy: ``fsdp2`` (default), ``ddp`` or ``megatron_fsdp``.
        dp_size: data-parallel size; ``auto`` (None here) is world size / (tp_size x cp_size).
        dp_replicate_size: replicas of the sharded model (HSDP); dp_size / dp_replicate_size ranks shard it.
        tp_size: tensor-parallel size.
        cp_size: context-parallel size (CUDA only).
        sequence_parallel: shard norms and activations along the sequence between TP regions.
        activation_checkpointing: recompute each transformer block in the backward pass.
        tp_plan: import path of a TP plan (a dict, or a callable taking the model and returning one).
        mixed_precision: FSDP2 dtypes.
        reshard_after_forward: FSDP2 frees the gathered parameters after each block's forward.
        cpu_offload: FSDP2 keeps sharded parameters, gradients and optimizer state on the CPU.
        backend: ``nccl`` or ``gloo`` (None: nccl on CUDA, gloo otherwise).
        timeout_minutes: how long a collective may wait before the job fails.
    """

    strategy: str = "fsdp2"
    dp_size: int | None = None
    dp_replicate_size: int = 1
    tp_size: int = 1
    cp_size: int = 1
    sequence_parallel: bool = False
    activation_checkpointing: bool = False
    tp_plan: str | None = None
    mixed_precision: MixedPrecision = field(default_factory=MixedPrecision)
    reshard_after_forward: bool = True
    cpu_offload: bool = False
    backend: str | None = None
    timeout_minutes: float = 30.0


KEYS = tuple(f.name for f in fields(DistributedConfig))
PRECISION_KEYS = tuple(f.name for f in fields(MixedPrecision))


def _closest(word: str, choices: tuple[str, ...]) -> str:
    match = difflib.get_close_matches(word, choices, n=1)
    return f"did you mean `{match[0]}`? " if match else ""


def _positive_int(section: Mapping[str, Any], key: str, default: int) -> int:
    value = section.get(key, default)
    if type(value) is not int or value < 1:
        raise DistributedError(f"distributed.{key} must be a positive integer, got {value!r}")
    return value


def _flag(section: Mapping[str, Any], key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise DistributedError(f"distributed.{key} must be true or false, got {value!r}")
    return value


def torch_dtype(name: str | None, key: str) -> torch.dtype | None:
    """Return the torch dtype called ``name`` (``bfloat16``, ``torch.float32``, ...), None for None.

    Raises:
        DistributedError: naming ``key`` when ``name`` is not a floating dtype.
    """
    if name is None:
        return None
    dtype = getattr(torch, str(name).removeprefix("torch."), None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise DistributedError(
            f"{key} is {name!r}, which is not a floating torch dtype; use bfloat16, float16 or float32"
        )
    return dtype


def _mixed_precision(value: Any) -> MixedPrecision:
    if value is None:
        return MixedPrecision()
    if not isinstance(value, Mapping):
        raise DistributedError(
            f"distributed.mixed_precision must be a mapping of {', '.join(PRECISION_KEYS)}, got {value!r}"
        )
    for key in value:
        if key not in PRECISION_KEYS:
            raise DistributedError(
                f"distributed.mixed_precision.{key} is not a mixed-precision key; "
                f"{_closest(str(key), PRECISION_KEYS)}known keys: {', '.join(PRECISION_KEYS)}"
            )
    for key in PRECISION_KEYS:
        torch_dtype(value.get(key), f"distributed.mixed_precision.{key}")
    defaults = MixedPrecision()
    return MixedPrecision(**{key: value.get(key, getattr(defaults, key)) for key in PRECISION_KEYS})


def parse_distributed_config(section: Mapping[str, Any] | None) -> DistributedConfig:
    """Check a ``distributed:`` mapping key by key and return it as a DistributedConfig.

    Args:
        section: the YAML section as a mapping (None or empty: every default).

    Returns:
        The DistributedConfig. Sizes are checked against the world size by ``resolve_sizes``.

    Raises:
        DistributedError: an unknown key (with the closest known one), a value of the wrong
            type, or a combination that cannot work whatever the world size.
    """
    section = dict(section or {})
    for key in section:
        if key not in KEYS:
            raise DistributedError(
                f"distributed.{key} is not a distributed setting; {_closest(str(key), KEYS)}"
                f"known keys: {', '.join(KEYS)}"
            )
    strategy = section.get("strategy", "fsdp2")
    if strategy not in STRATEGIES:
        raise DistributedError(
            f"distributed.strategy is {strategy!r}; {_closest(str(strategy), STRATEGIES)}"
            f"choose one of {', '.join(STRATEGIES)}"
        )
    dp_size = section.get("dp_size", "auto")
    if dp_size != "auto":
        dp_size = _positive_int(section, "dp_size", 1)
    backend = section.get("backend")
    if backend is not None and backend not in BACKENDS:
        raise DistributedError(f"distributed.backend is {backend!r}; use nccl (CUDA), gloo (CPU) or null (automatic)")
    timeout = section.get("timeout_minutes", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
        raise DistributedError(f"distributed.timeout_minutes must be a positive number, got {timeout!r}")
    tp_plan = section.get("tp_plan")
    if tp_plan is not None and (not isinstance(tp_plan, str) or "." not in tp_plan):
        raise DistributedError(
            f"distributed.tp_plan must be the import path of a plan (e.g. my_project.plans.llama_plan), got {tp_plan!r}"
        )
    config = DistributedConfig(
        strategy=strategy,
        dp_size=None if dp_size == "auto" else dp_size,
        dp_replicate_size=_positive_int(section, "dp_replicate_size", 1),
        tp_size=_positive_int(section, "tp_size", 1),
        cp_size=_positive_int(section, "cp_size", 1),
        sequence_parallel=_flag(section, "sequence_parallel", False),
        activation_checkpointing=_flag(section, "activation_checkpointing", False),
        tp_plan=tp_plan,
        mixed_precision=_mixed_precision(section.get("mixed_precision")),
        reshard_after_forward=_flag(section, "reshard_after_forward", True),
        cpu_offload=_flag(section, "cpu_offload", False),
        backend=backend,
        timeout_minutes=float(timeout),
    )
    _check_combination(config)
    return config


def _check_combination(config: DistributedConfig) -> None:
    if config.sequence_parallel and config.tp_size == 1:
        raise DistributedError(
            "distributed.sequence_parallel shards activations between tensor-parallel regions, "
            "so it needs distributed.tp_size > 1; set tp_size or remove sequence_parallel"
        )
    if config.strategy == "ddp":
        for key in ("tp_size", "cp_size", "dp_replicate_size"):
            if getattr(config, key) > 1:
                raise DistributedError(
                    f"distributed.strategy ddp replicates the whole model on every rank, so it cannot combine with "
                    f"distributed.{key} {getattr(config, key)}; use strategy: fsdp2 for that, or set {key}: 1"
                )
        if config.cpu_offload:
            raise DistributedError("distributed.cpu_offload is an FSDP2 option; use strategy: fsdp2 or remove it")
    if config.strategy == "megatron_fsdp":
        if importlib.util.find_spec("megatron_fsdp") is None:
            raise DistributedError(
                "distributed.strategy megatron_fsdp needs the megatron-fsdp package, which is not installed; "
                "pip install 'automodel-distributed[megatron]' or use strategy: fsdp2"
            )
        if not torch.cuda.is_available():
            raise DistributedError(
                "distributed.strategy megatron_fsdp runs on CUDA GPUs only and none is visible; use strategy: fsdp2"
            )


@dataclass(frozen=True)
class MeshSizes:
    """The size of each mesh dimension for one world size: ``dp_replicate x dp_shard x cp x tp == world``."""

    dp_replicate: int
    dp_shard: int
    cp: int
    tp: int

    @property
    def dp(self) -> int:
        """The data-parallel size (replicas x shards): how many different batches one step sees."""
        return self.dp_replicate * self.dp_shard


def resolve_sizes(config: DistributedConfig, world_size: int, device_type: str = "cpu") -> MeshSizes:
    """Work out the mesh sizes for ``world_size`` processes.

    Args:
        config: the parsed ``distributed:`` section.
        world_size: the number of processes.
        device_type: ``cuda`` or ``cpu``; context parallelism needs ``cuda``.

    Returns:
        MeshSizes whose product is ``world_size``.

    Raises:
        DistributedError: sizes that do not divide the world, showing the arithmetic.
    """
    tp, cp = config.tp_size, config.cp_size
    if cp > 1 and device_type != "cuda":
        raise DistributedError(
            f"distributed.cp_size {cp} needs CUDA: context parallelism runs on torch's ring attention over "
            "SDPA kernels that exist on GPUs only; set cp_size: 1 on this machine"
        )
    if config.cpu_offload and device_type != "cuda":
        raise DistributedError(
            "distributed.cpu_offload moves GPU parameters, gradients and optimizer state to the CPU, and this run "
            "has no GPU (everything is on the CPU already); remove cpu_offload"
        )
    if world_size % (tp * cp):
        raise DistributedError(
            f"the world size ({world_size} processes) is not divisible by tp_size x cp_size = {tp} x {cp} = {tp * cp}; "
            f"launch a multiple of {tp * cp} processes or change distributed.tp_size / cp_size"
        )
    dp = world_size // (tp * cp)
    if config.dp_size is not None and config.dp_size != dp:
        raise DistributedError(
            f"distributed.dp_size is {config.dp_size}, but world size / (tp_size x cp_size) = "
            f"{world_size} / ({tp} x {cp}) = {dp}; set dp_size: auto or {dp}, or launch "
            f"{config.dp_size * tp * cp} processes"
        )
    if dp % config.dp_replicate_size:
        raise DistributedError(
            f"distributed.dp_replicate_size ({config.dp_replicate_size}) does not divide the data-parallel size "
            f"{dp} (= {world_size} / ({tp} x {cp})); pick a divisor of {dp}"
        )
    return MeshSizes(config.dp_replicate_size, dp // config.dp_replicate_size, cp, tp)
