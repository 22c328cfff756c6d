"""One rank of the 2-process gloo test: FSDP2 training on the CPU, async checkpoints, reference values for rank 0."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
from checkpoint_test_helpers import TinyNet, build_run, flip_bytes, train
from safetensors.torch import save_file
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from automodel.checkpoint import Checkpointer, CheckpointError, load_hf_weights_into


def fsdp2(model: torch.nn.Module) -> None:
    """Shard both linear layers and the root over all ranks (FSDP2 on a CPU mesh)."""
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    fully_shard(model.inp, mesh=mesh)
    fully_shard(model.out, mesh=mesh)
    fully_shard(model, mesh=mesh)


def full_state(run) -> dict[str, torch.Tensor]:
    """Whole weights and AdamW moments, gathered from every rank's shards."""
    state = {f"model.{k}": v.full_tensor() for k, v in run.model.state_dict().items()}
    for name, param in run.model.named_parameters():
        state[f"exp_avg.{name}"] = run.optimizer.state[param]["exp_avg"].full_tensor()
    return state


def save_on_two_ranks(rank: int, run_dir: str, port: int) -> None:
    """Train 5 steps on 2 ranks, saving asynchronously at steps 3 and 5, then load step 3 on both ranks, intact
    and damaged (each rank writes damaged_load_rank{R}.txt); rank 0 writes reference.safetensors."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        run = build_run(rank=rank, world_size=2, shard=fsdp2)
        torch.manual_seed(100 + rank)  # each rank draws its own dropout masks: its own RNG file
        checkpointer = Checkpointer(Path(run_dir) / "ckpt", async_save=True, max_shard_size=1000)
        reference = {}
        for step in (3, 5):
            train(run, step)
            checkpointer.save(
                step,
                model=run.model,
                optimizer=run.optimizer,
                stateful=run.stateful(),
                train_state={"epoch": run.epoch},
            )
            reference.update({f"step{step}.{k}": v for k, v in full_state(run).items()})
        checkpointer.close()

        # Both ranks resume step 3, each checking its share of the files against the manifest;
        # once rank 0 damages a file, both refuse it with the same message.
        step3 = Path(run_dir) / "ckpt" / "step_000003"
        resumed = build_run(rank=rank, world_size=2, shard=fsdp2)
        checkpointer.load(step3, model=resumed.model, optimizer=resumed.optimizer, stateful=resumed.stateful())
        dist.barrier()  # rank 1 has read its files before rank 0 damages one of them
        if rank == 0:
            flip_bytes(step3 / "dataloader" / "rank1.json")
        dist.barrier()
        try:
            checkpointer.load(step3, model=resumed.model, optimizer=resumed.optimizer, stateful=resumed.stateful())
            outcome = "loaded"
        except CheckpointError as error:
            outcome = str(error)
        (Path(run_dir) / f"damaged_load_rank{rank}.txt").write_text(outcome)

        resharded = TinyNet()
        fsdp2(resharded)
        load_hf_weights_into(resharded, Path(run_dir) / "ckpt" / "step_000005" / "model")
        reference.update({f"reloaded.{k}": v.full_tensor() for k, v in resharded.state_dict().items()})
        if rank == 0:
            save_file({k: v.contiguous() for k, v in reference.items()}, Path(run_dir) / "reference.safetensors")
    finally:
        dist.destroy_process_group()
