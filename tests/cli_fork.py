"""Running the `automodel` command many times without paying for torch's import each time.

``run_cli`` runs ``automodel.cli.main(argv)`` in a process forked from a server that has
already imported torch, transformers and the CLI, with the process's own stdout and stderr
(file descriptors 1 and 2) sent to files, so what it prints, its exit status and any
traceback are exactly what a user of the installed command would see.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

PRELOAD = ["torch", "transformers", "datasets", "automodel.cli.app", "automodel.recipes.llm.train_ft", "cli_fork"]


@dataclass
class CliResult:
    """What one run of the command left: exit status, stdout and stderr."""

    returncode: int
    stdout: str
    stderr: str


def _child(argv: list[str], cwd: str, env: dict[str, str], out: str, err: str) -> None:
    """Body of the forked process: redirect fds 1 and 2, run the CLI, exit with its status."""
    for fd, path in ((1, out), (2, err)):
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (the process ends right after)
    sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    from automodel.cli.app import main

    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


_CONTEXT: multiprocessing.context.BaseContext | None = None


def _context() -> multiprocessing.context.BaseContext:
    global _CONTEXT
    if _CONTEXT is None:
        _CONTEXT = multiprocessing.get_context("forkserver")
        _CONTEXT.set_forkserver_preload(PRELOAD)
    return _CONTEXT


def start_cli(
    argv: list[str], cwd: str | Path, out: str | Path, err: str | Path, env: dict[str, str] | None = None
) -> multiprocessing.process.BaseProcess:
    """Start ``automodel ARGV`` in ``cwd`` with its stdout and stderr written to the files ``out`` and ``err``.

    Returns the started process (``kill()``, ``join()``, ``exitcode`` as for any multiprocessing process;
    a process killed by signal N has exit code -N).
    """
    process = _context().Process(target=_child, args=(argv, str(cwd), dict(env or os.environ), str(out), str(err)))
    process.start()
    return process


def run_cli(argv: list[str], cwd: str | Path, env: dict[str, str] | None = None, timeout: float = 600) -> CliResult:
    """Run ``automodel ARGV`` in ``cwd`` with environment ``env`` (default: this process's) and return the result."""
    with tempfile.TemporaryDirectory() as tmp:
        out, err = os.path.join(tmp, "stdout"), os.path.join(tmp, "stderr")
        process = start_cli(argv, cwd, out, err, env)
        process.join(timeout)
        if process.is_alive():
            process.kill()
            process.join()
            raise TimeoutError(f"automodel {' '.join(argv)} ran past {timeout} s")
        return CliResult(process.exitcode, Path(out).read_text(), Path(err).read_text())


def steps_logged(run_dir: Path) -> int:
    """The number of steps a run in ``run_dir`` has logged to ``training.jsonl`` (0 before the first)."""
    path = run_dir / "training.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def kill_after_new_steps(
    argv: list[str], cwd: str | Path, run_dir: Path, logs: Path, *, new_steps: int, delay: float
) -> int:
    """Start ``automodel ARGV``, SIGKILL it ``delay`` seconds after it logged ``new_steps`` more steps
    (or when it ends by itself, or after 120 s), and return its exit code (``-SIGKILL`` when killed).

    Its stdout and stderr are written to ``logs/stdout`` and ``logs/stderr``.
    """
    before = steps_logged(run_dir)
    process = start_cli(argv, cwd, out=logs / "stdout", err=logs / "stderr")
    deadline = time.time() + 120
    while steps_logged(run_dir) < before + new_steps and process.is_alive() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(delay)
    process.kill()
    process.join()
    return process.exitcode
