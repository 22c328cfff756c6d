"""Run a function on N real processes (gloo on CPU) forked from an already-imported server, for tests.

Starting a Python process and importing torch costs seconds on a small machine; a
``forkserver`` that has imported the heavy modules once makes each rank start in
milliseconds, so a test of FSDP2 or TP on two processes costs about a second.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import queue
import socket
import traceback
from collections.abc import Callable, Sequence
from typing import Any

PRELOAD = ("torch", "torch.distributed.fsdp", "torch.distributed.tensor.parallel", "automodel.distributed")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _rank_main(
    target: Callable[..., Any], rank: int, world_size: int, port: int, args: tuple, backend: str | None, results: Any
) -> None:
    import torch

    from automodel.distributed.env import destroy_distributed, init_distributed

    os.environ.update(
        {
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world_size),
            "LOCAL_WORLD_SIZE": str(world_size),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
        }
    )
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    try:
        init_distributed(backend=backend, timeout_minutes=2)
        # Plain pickle copies tensors into the message; the queue's own pickler would share
        # their memory through a file descriptor that dies with this process.
        results.put((rank, True, pickle.dumps(target(*args))))
    except BaseException:
        results.put((rank, False, traceback.format_exc()))
    finally:
        destroy_distributed()


def run_on_ranks(
    target: Callable[..., Any],
    world_size: int,
    args: Sequence[Any] = (),
    *,
    timeout_s: float = 180.0,
    preload: Sequence[str] = (),
    backend: str | None = "gloo",
) -> list[Any]:
    """Call ``target(*args)`` on ``world_size`` processes joined in a gloo process group; return each rank's result.

    Args:
        target: a module-level function (it is pickled by reference) run after the group is up.
        world_size: the number of processes.
        args: positional arguments, pickled to every rank.
        timeout_s: how long to wait for all ranks.
        preload: extra modules the fork server imports once (the module defining ``target``).
        backend: the process group's backend (None: nccl with CUDA, gloo without).

    Returns:
        The return values, indexed by rank (they must pickle).

    Raises:
        RuntimeError: a rank raised (its traceback is in the message) or did not finish in time.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([*PRELOAD, *preload])
    results = context.Queue()
    port = free_port()
    ranks = [
        context.Process(target=_rank_main, args=(target, rank, world_size, port, tuple(args), backend, results))
        for rank in range(world_size)
    ]
    for process in ranks:
        process.start()
    outcomes: dict[int, tuple[bool, Any]] = {}
    try:
        for _ in ranks:
            rank, ok, value = results.get(timeout=timeout_s)
            outcomes[rank] = (ok, value)
            if not ok:
                break
    except queue.Empty:
        pass
    finally:
        for process in ranks:
            process.join(timeout=5 if len(outcomes) < world_size else timeout_s)
            if process.is_alive():
                process.kill()
                process.join()
    failed = {rank: value for rank, (ok, value) in outcomes.items() if not ok}
    if failed:
        rank = min(failed)
        raise RuntimeError(f"rank {rank} of {world_size} failed:\n{failed[rank]}")
    if len(outcomes) < world_size:
        missing = sorted(set(range(world_size)) - outcomes.keys())
        codes = [p.exitcode for p in ranks]
        raise RuntimeError(f"ranks {missing} of {world_size} gave no result within {timeout_s}s (exit codes {codes})")
    return [pickle.loads(outcomes[rank][1]) for rank in range(world_size)]
