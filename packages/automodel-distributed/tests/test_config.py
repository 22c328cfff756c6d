"""The ``distributed:`` section: each bad combination fails with a clear message; good ones give the right sizes."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from automodel.distributed.config import (
    DistributedConfig,
    MeshSizes,
    MixedPrecision,
    parse_distributed_config,
    resolve_sizes,
    torch_dtype,
)
from automodel.distributed.env import init_distributed, launcher_coordinates, pick_backend
from automodel.distributed.errors import DistributedError


def _fails(section: dict, *fragments: str) -> None:
    with pytest.raises(DistributedError) as caught:
        parse_distributed_config(section)
    for fragment in fragments:
        assert fragment in str(caught.value)


def _size_fails(section: dict, world_size: int, *fragments: str, device_type: str = "cpu") -> None:
    config = parse_distributed_config(section)
    with pytest.raises(DistributedError) as caught:
        resolve_sizes(config, world_size, device_type)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_an_unknown_key_names_the_closest_one() -> None:
    _fails({"tp_szie": 2}, "distributed.tp_szie is not a distributed setting", "did you mean `tp_size`?")


def test_an_unknown_strategy_names_the_closest_one() -> None:
    _fails({"strategy": "fsdp"}, "distributed.strategy is 'fsdp'", "did you mean `fsdp2`?", "ddp, megatron_fsdp")


def test_dp_size_that_does_not_match_the_world_shows_the_arithmetic() -> None:
    _size_fails(
        {"dp_size": 3, "tp_size": 2},
        8,
        "distributed.dp_size is 3",
        "world size / (tp_size x cp_size) = 8 / (2 x 1) = 4",
        "launch 6 processes",
    )


def test_a_world_not_divisible_by_tp_times_cp_is_refused() -> None:
    _size_fails({"tp_size": 3}, 4, "world size (4 processes) is not divisible by tp_size x cp_size = 3 x 1 = 3")


def test_dp_replicate_size_must_divide_the_data_parallel_size() -> None:
    _size_fails({"dp_replicate_size": 3}, 4, "dp_replicate_size (3) does not divide the data-parallel size 4")


def test_sequence_parallel_needs_tensor_parallelism() -> None:
    _fails({"sequence_parallel": True}, "distributed.sequence_parallel", "needs distributed.tp_size > 1")


@pytest.mark.parametrize("key", ["tp_size", "cp_size", "dp_replicate_size"])
def test_ddp_does_not_combine_with_model_sharding(key: str) -> None:
    _fails({"strategy": "ddp", key: 2}, f"cannot combine with distributed.{key} 2", f"set {key}: 1")


def test_ddp_has_no_cpu_offload() -> None:
    _fails({"strategy": "ddp", "cpu_offload": True}, "distributed.cpu_offload is an FSDP2 option")


def test_cpu_offload_without_a_gpu_is_refused() -> None:
    _size_fails({"cpu_offload": True}, 2, "distributed.cpu_offload moves GPU parameters", "remove cpu_offload")


def test_context_parallelism_needs_cuda() -> None:
    _size_fails({"cp_size": 2}, 2, "distributed.cp_size 2 needs CUDA", "set cp_size: 1")


def test_megatron_fsdp_without_its_package_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    _fails({"strategy": "megatron_fsdp"}, "needs the megatron-fsdp package", "automodel-distributed[megatron]")


def test_megatron_fsdp_without_cuda_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    _fails({"strategy": "megatron_fsdp"}, "megatron_fsdp runs on CUDA GPUs only", "use strategy: fsdp2")


def test_an_unknown_backend_is_refused() -> None:
    _fails({"backend": "mpi"}, "distributed.backend is 'mpi'", "nccl (CUDA), gloo (CPU) or null")


def test_nccl_without_cuda_is_refused_and_null_picks_by_device(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DistributedError, match="backend is nccl, which needs CUDA GPUs"):
        pick_backend("nccl")
    assert pick_backend(None) == "gloo"
    assert pick_backend("gloo") == "gloo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert pick_backend(None) == "nccl"


@pytest.mark.parametrize(
    ("precision", "fragment"),
    [
        ({"param_dtype": "bf16"}, "distributed.mixed_precision.param_dtype is 'bf16', which is not a floating"),
        ({"reduce_dtype": "int8"}, "distributed.mixed_precision.reduce_dtype is 'int8'"),
        ({"param_dtyp": "bfloat16"}, "did you mean `param_dtype`?"),
        ("bfloat16", "distributed.mixed_precision must be a mapping of param_dtype, reduce_dtype, output_dtype"),
    ],
    ids=["not-a-dtype", "integer-dtype", "unknown-key", "not-a-mapping"],
)
def test_bad_mixed_precision_is_refused(precision, fragment: str) -> None:
    _fails({"mixed_precision": precision}, fragment)


@pytest.mark.parametrize("timeout", [0, -5, "30", True])
def test_a_bad_timeout_is_refused(timeout) -> None:
    _fails({"timeout_minutes": timeout}, "distributed.timeout_minutes must be a positive number")


@pytest.mark.parametrize("plan", ["llama_plan", 5])
def test_a_tp_plan_that_is_not_an_import_path_is_refused(plan) -> None:
    _fails({"tp_plan": plan}, "distributed.tp_plan must be the import path of a plan")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("tp_size", "2"),
        ("tp_size", 2.0),
        ("cp_size", 0),
        ("dp_replicate_size", -1),
        ("tp_size", True),
        ("dp_size", "4"),
    ],
)
def test_sizes_must_be_positive_integers(key: str, value) -> None:
    _fails({key: value}, f"distributed.{key} must be a positive integer, got {value!r}")


@pytest.mark.parametrize(
    "key", ["sequence_parallel", "activation_checkpointing", "reshard_after_forward", "cpu_offload"]
)
@pytest.mark.parametrize("value", ["true", "yes", 1])
def test_switches_must_be_booleans_not_strings(key: str, value) -> None:
    _fails({key: value}, f"distributed.{key} must be true or false, got {value!r}")


def test_an_empty_section_is_every_default() -> None:
    config = parse_distributed_config(None)
    assert config == parse_distributed_config({}) == DistributedConfig()
    assert (config.strategy, config.dp_size, config.tp_size, config.cp_size) == ("fsdp2", None, 1, 1)
    assert config.mixed_precision == MixedPrecision(param_dtype=None, reduce_dtype="float32", output_dtype=None)
    assert config.reshard_after_forward and not config.cpu_offload and config.timeout_minutes == 30.0
    assert resolve_sizes(config, 1) == MeshSizes(1, 1, 1, 1)


def test_auto_dp_is_the_world_over_tp_times_cp() -> None:
    sizes = resolve_sizes(parse_distributed_config({"dp_size": "auto", "tp_size": 2}), 8)
    assert sizes == MeshSizes(dp_replicate=1, dp_shard=4, cp=1, tp=2) and sizes.dp == 4
    explicit = resolve_sizes(parse_distributed_config({"dp_size": 4, "tp_size": 2}), 8)
    assert explicit == sizes


def test_hsdp_splits_data_parallelism_into_replicas_and_shards() -> None:
    sizes = resolve_sizes(parse_distributed_config({"dp_replicate_size": 2}), 8)
    assert sizes == MeshSizes(dp_replicate=2, dp_shard=4, cp=1, tp=1) and sizes.dp == 8


def test_context_parallelism_on_cuda_takes_its_share_of_the_world() -> None:
    sizes = resolve_sizes(parse_distributed_config({"cp_size": 2, "tp_size": 2}), 8, "cuda")
    assert sizes == MeshSizes(dp_replicate=1, dp_shard=2, cp=2, tp=2) and sizes.dp == 2


def test_good_values_are_kept() -> None:
    config = parse_distributed_config(
        {
            "strategy": "ddp",
            "backend": "gloo",
            "timeout_minutes": 5,
            "activation_checkpointing": True,
            "mixed_precision": {"param_dtype": "torch.bfloat16"},
            "tp_plan": None,
        }
    )
    assert (config.strategy, config.backend, config.timeout_minutes) == ("ddp", "gloo", 5.0)
    assert config.activation_checkpointing
    assert config.mixed_precision == MixedPrecision(param_dtype="torch.bfloat16")
    assert parse_distributed_config({"tp_size": 2, "tp_plan": "my_project.plans.llama"}).tp_plan == (
        "my_project.plans.llama"
    )
    assert torch_dtype("torch.bfloat16", "k") is torch.bfloat16 and torch_dtype(None, "k") is None


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0"}, (2, 4, 0)),
        ({"SLURM_NTASKS": "8", "SLURM_PROCID": "5", "SLURM_LOCALID": "1"}, (5, 8, 1)),
        ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "SLURM_NTASKS": "8", "SLURM_PROCID": "5"}, (1, 2, 1)),
        ({"WORLD_SIZE": "2", "RANK": "1"}, (1, 2, 0)),
        ({}, (0, 1, 0)),
        ({"WORLD_SIZE": "1", "RANK": "0"}, (0, 1, 0)),
    ],
    ids=["torchrun", "slurm", "torchrun-under-slurm", "no-local-rank", "none", "one-process"],
)
def test_launcher_coordinates(environ: dict, expected: tuple) -> None:
    assert launcher_coordinates(environ) == expected


def test_launcher_coordinates_refuse_a_world_without_rank_and_non_numbers() -> None:
    with pytest.raises(DistributedError, match="WORLD_SIZE is 2 but RANK is not set"):
        launcher_coordinates({"WORLD_SIZE": "2"})
    with pytest.raises(DistributedError, match="WORLD_SIZE is 'two', not a number"):
        launcher_coordinates({"WORLD_SIZE": "two"})


def test_init_distributed_without_a_rendezvous_address_says_how_to_launch(monkeypatch) -> None:
    for name in ("MASTER_ADDR", "MASTER_PORT", "SLURM_NTASKS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(DistributedError) as caught:
        init_distributed()
    message = str(caught.value)
    assert "MASTER_ADDR and MASTER_PORT not set" in message and "torchrun" in message


def test_one_process_describes_itself_as_such() -> None:
    from automodel.distributed import setup_parallelism

    assert setup_parallelism(None).describe() == "1 process"
