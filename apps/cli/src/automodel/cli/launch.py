"""The local launcher: run a recipe in this process, or under torch.distributed.run."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from automodel.cli.errors import CliError
from automodel.cli.routes import Route, load_main
from automodel.config import ALLOW_TARGET_FLAG, TRUST_REMOTE_CODE_FLAG

ERROR_DIR_ENV = "AUTOMODEL_ERROR_DIR"


@dataclass(frozen=True)
class LaunchOptions:
    """Launcher flags from the command line (torchrun's names, dashes as in torchrun).

    ``allow_targets`` (``--allow-target``) and ``trust_remote_code`` (``--trust-remote-code``)
    are the user's permissions; every process of the run gets them on its command line.
    """

    nproc_per_node: int = 1
    nnodes: str | None = None
    node_rank: int | None = None
    master_addr: str | None = None
    master_port: int | None = None
    dry_run: bool = False
    rdzv_endpoint: str | None = None
    allow_targets: tuple[str, ...] = ()
    trust_remote_code: bool = False

    def multi_process(self) -> bool:
        """True when the flags ask for more than one process or for another node."""
        return (
            self.nproc_per_node > 1
            or self.nnodes not in (None, "1")
            or self.node_rank not in (None, 0)
            or self.rdzv_endpoint is not None
        )


def inside_torchrun() -> bool:
    """True when this process is already a worker started by torchrun (or another launcher setting RANK)."""
    env = os.environ
    return "TORCHELASTIC_RUN_ID" in env or {"RANK", "WORLD_SIZE", "LOCAL_RANK"} <= env.keys()


def check_options(options: LaunchOptions) -> None:
    """Raise CliError for launcher flags that cannot work."""
    if options.nproc_per_node < 1:
        raise CliError(f"--nproc-per-node must be at least 1, got {options.nproc_per_node}")
    if options.master_port is not None and not 0 < options.master_port < 65536:
        raise CliError(f"--master-port must be between 1 and 65535, got {options.master_port}")
    if options.node_rank is not None and options.node_rank < 0:
        raise CliError(f"--node-rank must be 0 or more, got {options.node_rank}")
    if options.rdzv_endpoint is not None and options.master_addr is not None:
        raise CliError(
            "--rdzv-endpoint and --master-addr both say where the nodes meet; give one (--rdzv-endpoint host:port "
            "for c10d rendezvous, or --master-addr/--master-port for a static one)"
        )


def permission_args(allow_targets: Sequence[str], trust_remote_code: bool) -> list[str]:
    """Return the worker arguments for the user's permissions: ``--allow-target NAME`` each, ``--trust-remote-code``."""
    args = [arg for name in allow_targets for arg in (ALLOW_TARGET_FLAG, name)]
    return [*args, TRUST_REMOTE_CODE_FLAG] if trust_remote_code else args


def worker_command(route: Route, config_path: str, overrides: list[str], permissions: Sequence[str] = ()) -> list[str]:
    """Return the command that runs ``route`` on ``config_path`` in one process.

    ``permissions`` (from ``permission_args``) come before the ``overrides``.
    """
    return [sys.executable, "-m", "automodel.cli.worker", route.name, "-c", config_path, *permissions, *overrides]


def torchrun_command(options: LaunchOptions, route: Route, config_path: str, overrides: list[str]) -> list[str]:
    """Return the torch.distributed.run command for the launcher flags (through automodel.cli.torchrun).

    Each worker gets the user's ``--allow-target`` and ``--trust-remote-code`` on its command line.
    """
    args = [sys.executable, "-m", "automodel.cli.torchrun", f"--nproc-per-node={options.nproc_per_node}"]
    single_node = options.nnodes in (None, "1") and options.master_addr is None and options.rdzv_endpoint is None
    if single_node and options.master_port is None:
        args.append("--standalone")
    if options.nnodes is not None:
        args.append(f"--nnodes={options.nnodes}")
    if options.node_rank is not None:
        args.append(f"--node-rank={options.node_rank}")
    if options.master_addr is not None:
        args.append(f"--master-addr={options.master_addr}")
    if options.master_port is not None:
        args.append(f"--master-port={options.master_port}")
    if options.rdzv_endpoint is not None:
        args += ["--rdzv-backend=c10d", f"--rdzv-endpoint={options.rdzv_endpoint}"]
    permissions = permission_args(options.allow_targets, options.trust_remote_code)
    return [*args, *worker_command(route, config_path, overrides, permissions)[1:]]


def shell_join(command: list[str]) -> str:
    """Return ``command`` as one shell-quoted line."""
    return shlex.join(command)


def run_in_process(route: Route, config: object) -> int:
    """Import the route's ``main`` and call it with ``config``; return its exit status."""
    main = load_main(route)
    result = main(config)
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def first_worker_error(error_dir: Path) -> str | None:
    """Return the message of the lowest-ranked worker that reported a user error, if any."""
    files = sorted(error_dir.glob("rank*.txt"), key=lambda p: int(p.stem[4:] or 0))
    return files[0].read_text(encoding="utf-8").strip() if files else None


def run_torchrun(command: list[str], nproc_per_node: int) -> tuple[int, str | None]:
    """Run a torchrun command; return (exit status, first worker user-error message or None).

    Unless OMP_NUM_THREADS is set, each worker gets an equal share of this machine's cores
    (torchrun alone would give each one thread).
    """
    with tempfile.TemporaryDirectory(prefix="automodel-errors-") as error_dir:
        env = {**os.environ, ERROR_DIR_ENV: error_dir}
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc_per_node)))
        try:
            code = subprocess.run(command, env=env, check=False).returncode
        except KeyboardInterrupt:
            return 130, None
        return code, first_worker_error(Path(error_dir)) if code else None
