"""``python -m automodel.cli.torchrun [torchrun args]``: torch.distributed.run without its failure traceback.

torchrun reports a failed worker by raising ChildFailedError, which prints a Python
traceback. This wrapper runs the same launcher and exits with the failed worker's own
exit status instead, so a user error in a worker still ends as one paragraph and exit 2.

It also passes SIGUSR1 on to the training processes: torchrun itself would die of it,
while a recipe saves a checkpoint at the next step boundary and stops (how a SLURM job is
told it is about to be preempted or reach its time limit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any


def child_pids(parent: int) -> list[int]:
    """Return the process ids whose parent is ``parent`` (read from /proc; empty where there is no /proc)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[1]) == parent:
            children.append(int(stat.parent.name))
    return children


def forward_to_workers(signum: int, frame: Any = None) -> None:
    """Signal handler: send ``signum`` to this launcher's direct children (the worker processes)."""
    for pid in child_pids(os.getpid()):
        with contextlib.suppress(ProcessLookupError):  # a worker that has just exited
            os.kill(pid, signum)


def main(argv: list[str] | None = None) -> int:
    """Run torch.distributed.run with ``argv``; return 0 or the first failed worker's exit status."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    signal.signal(signal.SIGUSR1, forward_to_workers)
    args = get_args_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except ChildFailedError as exc:
        codes = [failure.exitcode for _, failure in sorted(exc.failures.items())]
        failed = [code if code > 0 else 128 - code for code in codes if code != 0]
        return failed[0] if failed else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
