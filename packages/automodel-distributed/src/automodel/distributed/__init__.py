"""automodel.distributed: process groups, the named device mesh, FSDP2, DDP, tensor and context parallelism.

Everything is torch.distributed (DeviceMesh, DTensor, ``fully_shard``, ``parallelize_module``,
``context_parallel``); this package chooses and combines them from one ``distributed:`` section.
"""

from automodel.distributed.activation_checkpointing import checkpoint_blocks
from automodel.distributed.blocks import transformer_blocks
from automodel.distributed.compilation import CompileConfig, compile_blocks, parse_compile_config
from automodel.distributed.config import (
    DistributedConfig,
    MeshSizes,
    MixedPrecision,
    parse_distributed_config,
    resolve_sizes,
)
from automodel.distributed.cp import make_cp_batch_and_ctx, prepare_cp_batch
from automodel.distributed.ddp import apply_ddp, unwrap_model
from automodel.distributed.env import (
    DistributedEnv,
    any_rank,
    destroy_distributed,
    init_distributed,
    is_rank0,
    launcher_coordinates,
    rank0_print,
)
from automodel.distributed.errors import DistributedError
from automodel.distributed.fsdp2 import apply_fsdp2, reshard_model
from automodel.distributed.megatron import apply_megatron_fsdp, prepare_megatron_optimizer
from automodel.distributed.mesh import (
    build_device_mesh,
    data_parallel_coordinates,
    loss_reduction_size,
    sum_over_data_parallel,
)
from automodel.distributed.parallelize import Parallelism, parallelize_model, setup_parallelism
from automodel.distributed.tp import apply_tensor_parallel, gathered_logits, sharded_logits_loss

__version__ = "0.2.1"

__all__ = [
    "CompileConfig",
    "DistributedConfig",
    "DistributedEnv",
    "DistributedError",
    "MeshSizes",
    "MixedPrecision",
    "Parallelism",
    "any_rank",
    "apply_ddp",
    "apply_fsdp2",
    "apply_megatron_fsdp",
    "apply_tensor_parallel",
    "build_device_mesh",
    "checkpoint_blocks",
    "compile_blocks",
    "data_parallel_coordinates",
    "destroy_distributed",
    "gathered_logits",
    "init_distributed",
    "is_rank0",
    "launcher_coordinates",
    "loss_reduction_size",
    "make_cp_batch_and_ctx",
    "parallelize_model",
    "parse_compile_config",
    "parse_distributed_config",
    "prepare_cp_batch",
    "prepare_megatron_optimizer",
    "rank0_print",
    "reshard_model",
    "resolve_sizes",
    "setup_parallelism",
    "sharded_logits_loss",
    "sum_over_data_parallel",
    "transformer_blocks",
    "unwrap_model",
]
