"""Start and stop the process group from the launcher's environment (torchrun, SLURM, or none)."""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from automodel.distributed.errors import DistributedError


@dataclass(frozen=True)
class DistributedEnv:
    """Where this process stands.

    Attributes:
        rank: global rank (0 for a single process).
        world_size: number of processes.
        local_rank: rank on this node; picks the GPU.
        device: the device this process computes on.
        backend: the process group's backend, None for a single process.
    """

    rank: int
    world_size: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def is_rank0(self) -> bool:
        """True on the process that prints and writes shared files."""
        return self.rank == 0


def _int(environ: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        if name in environ:
            try:
                return int(environ[name])
            except ValueError:
                raise DistributedError(f"the environment variable {name} is {environ[name]!r}, not a number") from None
    return None


def launcher_coordinates(environ: Mapping[str, str] | None = None) -> tuple[int, int, int]:
    """Return ``(rank, world_size, local_rank)`` from torchrun's variables, else SLURM's, else ``(0, 1, 0)``.

    torchrun sets RANK/WORLD_SIZE/LOCAL_RANK; ``srun`` without torchrun sets
    SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID.
    """
    environ = os.environ if environ is None else environ
    world = _int(environ, "WORLD_SIZE", "SLURM_NTASKS")
    if world is None or world <= 1:
        return 0, 1, 0
    rank = _int(environ, "RANK", "SLURM_PROCID")
    local = _int(environ, "LOCAL_RANK", "SLURM_LOCALID")
    if rank is None:
        raise DistributedError(f"WORLD_SIZE is {world} but RANK is not set; start the processes with torchrun or srun")
    return rank, world, local if local is not None else 0


def pick_backend(requested: str | None) -> str:
    """Return ``requested``, or nccl when CUDA is available and gloo otherwise.

    Raises:
        DistributedError: nccl asked for without CUDA.
    """
    if requested is None:
        return "nccl" if torch.cuda.is_available() else "gloo"
    if requested == "nccl" and not torch.cuda.is_available():
        raise DistributedError("distributed.backend is nccl, which needs CUDA GPUs; use gloo (or null) on this machine")
    return requested


def init_distributed(backend: str | None = None, timeout_minutes: float = 30.0) -> DistributedEnv:
    """Join the process group the launcher described, or run as one process when there is none.

    Sets the CUDA device to the local rank. Under SLURM without torchrun, MASTER_ADDR and
    MASTER_PORT must be exported by the job script. Calling it again in a process that has
    already joined returns the same description.

    Args:
        backend: ``nccl``, ``gloo`` or None (nccl on CUDA, gloo otherwise).
        timeout_minutes: how long a collective may wait.

    Returns:
        The DistributedEnv of this process.
    """
    rank, world_size, local_rank = launcher_coordinates()
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        device = torch.device("cuda", torch.cuda.current_device())
    else:
        device = torch.device("cpu")
    if world_size == 1:
        return DistributedEnv(0, 1, 0, device, None)
    if dist.is_initialized():
        return DistributedEnv(dist.get_rank(), dist.get_world_size(), local_rank, device, dist.get_backend())
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise DistributedError(
            f"{' and '.join(missing)} not set: {world_size} processes need a rendezvous address; launch with "
            "torchrun (automodel ... --nproc-per-node N) or export them in the job script"
        )
    chosen = pick_backend(backend)
    os.environ.setdefault("RANK", str(rank))
    os.environ.setdefault("LOCAL_RANK", str(local_rank))
    dist.init_process_group(
        backend=chosen,
        rank=rank,
        world_size=world_size,
        timeout=datetime.timedelta(minutes=timeout_minutes),
        device_id=device if device.type == "cuda" else None,
    )
    return DistributedEnv(rank, world_size, local_rank, device, chosen)


def destroy_distributed() -> None:
    """Leave the process group, if this process is in one (safe to call more than once)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, device: torch.device | None = None) -> bool:
    """Return True on every rank when ``flag`` is True on at least one (``flag`` itself for one process).

    A decision that changes which collectives run next (stop and save after a signal that
    reached the ranks at different steps) must be the same on every rank; every rank must call this.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return flag
    if device is None:
        device = (
            torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
        )
    value = torch.tensor(int(flag), device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def is_rank0() -> bool:
    """True for a single process or global rank 0."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def rank0_print(*values: Any, file: Any = None) -> None:
    """``print`` on rank 0 only (to stdout, or ``file``), so N processes do not print N copies."""
    if is_rank0():
        print(*values, file=file if file is not None else sys.stdout, flush=True)
