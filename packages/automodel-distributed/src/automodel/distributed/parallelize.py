"""One call from a ``distributed:`` section to a parallel run: process group, mesh, sharded model, loss hooks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.distributed.device_mesh import DeviceMesh

from automodel.distributed.activation_checkpointing import checkpoint_blocks
from automodel.distributed.config import DistributedConfig, MeshSizes, parse_distributed_config, resolve_sizes
from automodel.distributed.cp import make_cp_batch_and_ctx
from automodel.distributed.ddp import apply_ddp, unwrap_model
from automodel.distributed.env import DistributedEnv, any_rank, init_distributed, launcher_coordinates
from automodel.distributed.fsdp2 import apply_fsdp2, reshard_model
from automodel.distributed.megatron import apply_megatron_fsdp, prepare_megatron_optimizer
from automodel.distributed.mesh import (
    build_device_mesh,
    data_parallel_coordinates,
    loss_reduction_size,
    sum_over_data_parallel,
)
from automodel.distributed.tp import apply_tensor_parallel, gathered_logits, sharded_logits_loss


@dataclass(frozen=True)
class Parallelism:
    """Everything a training loop needs to know about the parallel layout of this run.

    Attributes:
        env: this process's rank, world size and device.
        config: the validated ``distributed:`` section.
        sizes: the mesh sizes (all 1 for a single process).
        mesh: the device mesh, None for a single process.
    """

    env: DistributedEnv
    config: DistributedConfig
    sizes: MeshSizes
    mesh: DeviceMesh | None

    @property
    def device(self) -> torch.device:
        """The device this process computes on."""
        return self.env.device

    @property
    def dp_rank(self) -> int:
        """Which shard of the data this process reads."""
        return data_parallel_coordinates(self.mesh)[0]

    @property
    def dp_size(self) -> int:
        """How many shards the data is split into (ranks reading different batches)."""
        return data_parallel_coordinates(self.mesh)[1]

    @property
    def is_rank0(self) -> bool:
        """True on the process that prints and writes shared files."""
        return self.env.is_rank0

    @property
    def gradient_sum_size(self) -> int:
        """How many ranks' gradients are summed into one (dp x cp)."""
        return loss_reduction_size(self.mesh)

    def any_rank(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is True on at least one; every rank must call it."""
        return any_rank(flag, self.device)

    def describe(self) -> str:
        """One line saying how the processes are laid out: ``1 process``, or the world size, backend,
        strategy and mesh sizes."""
        if self.env.world_size == 1:
            return "1 process"
        sizes = self.sizes
        dims = f"dp_replicate={sizes.dp_replicate} x dp_shard={sizes.dp_shard} x cp={sizes.cp} x tp={sizes.tp}"
        return f"{self.env.world_size} processes ({self.env.backend}), {self.config.strategy}: {dims}"

    def parallelize(self, model: torch.nn.Module) -> torch.nn.Module:
        """Apply TP, activation checkpointing and the sharding strategy to ``model``; return what to train.

        For ``ddp`` the result is a wrapper (``unwrap_model`` gives the model back); for
        ``fsdp2`` and TP the model itself is changed in place and returned.
        """
        return parallelize_model(model, self.mesh, self.config, self.device)

    def prepare_optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Return the optimizer to step: Megatron-FSDP's sharded-optimizer hooks added for ``megatron_fsdp``."""
        if self.mesh is not None and self.config.strategy == "megatron_fsdp":
            return prepare_megatron_optimizer(optimizer)
        return optimizer

    def reshard(self, model: torch.nn.Module) -> None:
        """Return FSDP2 parameters to their shards after forward passes without backward (see ``reshard_model``)."""
        reshard_model(model)

    def sum_over_data_parallel(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The all-reduce that sums label-token counts and losses over dp x cp (None for one process)."""
        return sum_over_data_parallel(self.mesh)

    def micro_batch_hook(self) -> Callable[[Mapping[str, Any]], tuple] | None:
        """Return ``prepare_micro_batch`` when a micro-batch needs it (TP or CP), else None (nothing to do)."""
        return self.prepare_micro_batch if self.sizes.tp > 1 or self.sizes.cp > 1 else None

    def prepare_micro_batch(self, batch: Mapping[str, Any]) -> tuple[contextlib.AbstractContextManager, dict]:
        """Return ``(context, batch)`` for one micro-batch: enter the context around its forward and backward.

        Under context parallelism the batch's sequence is sharded over ``cp`` and the context
        runs attention as ring attention; under TP the context lets the loss read
        vocabulary-sharded logits. Otherwise the context does nothing and the batch is unchanged.
        """
        stack = contextlib.ExitStack()
        batch = dict(batch)
        if self.sizes.cp > 1:
            cp_context, batch = make_cp_batch_and_ctx(self.mesh, batch)
            stack.enter_context(cp_context)
        if self.sizes.tp > 1:
            stack.enter_context(sharded_logits_loss())
        return stack, batch

    @contextlib.contextmanager
    def generation(self, model: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Yield the module to call ``generate`` on (the model inside DDP; whole logits under TP).

        Compiled blocks run eagerly inside: a KV cache changes shapes at every token, which
        would recompile them again and again.
        """
        inner = unwrap_model(model)
        with torch.compiler.set_stance("force_eager"):
            if self.sizes.tp > 1:
                with gathered_logits(inner):
                    yield inner
            else:
                yield inner


def setup_parallelism(section: Mapping[str, Any] | None) -> Parallelism:
    """Validate ``distributed:``, join the process group the launcher made, and build the device mesh.

    A single process (no launcher) gets no process group and no mesh; the section is still
    checked, so a typo fails on a laptop as it would on a cluster.

    Args:
        section: the ``distributed:`` mapping (None: every default).

    Returns:
        The Parallelism of this process.

    Raises:
        DistributedError: a bad key or value, or sizes that do not divide the world size.
    """
    config = parse_distributed_config(section)
    _, world_size, _ = launcher_coordinates()
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    sizes = resolve_sizes(config, world_size, device_type)
    env = init_distributed(config.backend, config.timeout_minutes)
    mesh = build_device_mesh(sizes, env.device.type) if env.world_size > 1 else None
    return Parallelism(env, config, sizes, mesh)


def parallelize_model(
    model: torch.nn.Module, mesh: DeviceMesh | None, config: DistributedConfig, device: torch.device
) -> torch.nn.Module:
    """Apply, in order, tensor parallelism, activation checkpointing and the sharding strategy.

    Args:
        model: the model on ``device`` (after PEFT and freezing).
        mesh: from ``build_device_mesh``; None for one process (only activation checkpointing applies).
        config: the ``distributed:`` settings.
        device: this process's device.

    Returns:
        The module to train: the model itself (FSDP2, TP, megatron_fsdp) or a DDP wrapper.
    """
    if mesh is not None and mesh["tp"].size() > 1:
        apply_tensor_parallel(model, mesh["tp"], plan=config.tp_plan, sequence_parallel=config.sequence_parallel)
    if config.activation_checkpointing:
        checkpoint_blocks(model)
    if mesh is None:
        return model
    if config.strategy == "ddp":
        return apply_ddp(model, mesh, device)
    if config.strategy == "megatron_fsdp":
        return apply_megatron_fsdp(model, mesh, config)
    return apply_fsdp2(model, mesh, config)
