"""The SLURM launcher: the ``slurm:`` section becomes an sbatch script in the job directory, submitted with sbatch.

The script starts one ``srun`` task per node, and each task runs torchrun (through
``automodel.cli.torchrun``) with c10d rendezvous on the first node, so every node joins one
process group. ``--signal=B:USR1@<grace>`` (and ``scancel --signal=USR1 --batch``) reach the
script, which forwards USR1 to the training processes; they save a checkpoint at the next
step boundary and stop. The script then requeues the job (``requeue: true``), and the next
start resumes from ``latest`` (``checkpoint.auto_resume``).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from automodel.cli.errors import CliError
from automodel.cli.job import (
    CONFIG_FILE,
    Job,
    check_keys,
    job_dir,
    looks_secret,
    refuse_permission_variable,
    secrets_to_environment,
)
from automodel.config import dump_yaml

SLURM_KEYS = (
    "job_name",
    "nodes",
    "ntasks_per_node",
    "gpus_per_node",
    "cpus_per_task",
    "mem",
    "time",
    "account",
    "partition",
    "qos",
    "reservation",
    "exclusive",
    "constraint",
    "container_image",
    "container_mounts",
    "env",
    "extra_sbatch_args",
    "setup",
    "job_dir",
    "requeue",
    "signal_grace_s",
    "rdzv_port",
    "python",
)
SCRIPT_FILE = "sbatch.sh"
ENV_REFERENCE = re.compile(r"^\$\{env:([A-Za-z_][A-Za-z0-9_]*)(,[^}]*)?\}$")


@dataclass(frozen=True)
class SlurmSettings:
    """A checked ``slurm:`` section.

    Attributes:
        job_name: the SLURM job name.
        nodes: how many nodes.
        nproc_per_node: training processes per node (``ntasks_per_node``; default gpus_per_node or 1).
        gpus_per_node: GPUs to ask for per node (0: none).
        cpus_per_task: CPUs for each node's task (which runs all of that node's processes).
        sbatch: the other ``#SBATCH`` options, in order (``--mem=...``, ``--time=...``, ...).
        container_image / container_mounts: run inside this image with pyxis/enroot (None: the current environment).
        env: ``NAME -> value`` exported in the script; ``${env:NAME}`` values are not written but
            passed through from the submitter's environment (sbatch exports it).
        setup: shell commands run before training (module loads, ``source venv/bin/activate``).
        job_dir: where the script, the config and the logs go.
        requeue: requeue the job after a preemption checkpoint.
        signal_grace_s: seconds before the time limit at which SLURM sends USR1.
        rdzv_port: the rendezvous port on the first node.
        python: the Python that runs training (default: this one, or ``python`` inside a container).
    """

    job_name: str
    nodes: int
    nproc_per_node: int
    gpus_per_node: int
    cpus_per_task: int | None
    sbatch: tuple[str, ...]
    container_image: str | None
    container_mounts: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    job_dir: Path = Path("automodel_jobs")
    requeue: bool = True
    signal_grace_s: int = 120
    rdzv_port: int = 29500
    python: str = sys.executable


def _int(section: Mapping[str, Any], key: str, default: int | None, minimum: int) -> int | None:
    value = section.get(key, default)
    if value is None:
        return None
    if type(value) is not int or value < minimum:
        raise CliError(f"slurm.{key} must be an integer of at least {minimum}, got {value!r}")
    return value


def _text(section: Mapping[str, Any], key: str) -> str | None:
    value = section.get(key)
    if value is None:
        return None
    if isinstance(value, (dict, list, bool)):
        raise CliError(f"slurm.{key} must be a single value, got {value!r}")
    return str(value)


def _strings(section: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = section.get(key) or []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, (str, int, float)) for v in value):
        raise CliError(f"slurm.{key} must be a list of strings, got {value!r}")
    return tuple(str(v) for v in value)


def _env(section: Mapping[str, Any]) -> dict[str, str]:
    value = section.get("env") or {}
    if not isinstance(value, Mapping):
        raise CliError(f"slurm.env must be a mapping of NAME: value, got {value!r}")
    env = {}
    for name, text in value.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", str(name)):
            raise CliError(f"slurm.env.{name} is not an environment variable name (letters, digits, underscores)")
        refuse_permission_variable(f"slurm.env.{name}", str(name))
        text = "" if text is None else str(text)
        reference = ENV_REFERENCE.match(text)
        if reference is None and looks_secret(str(name)):
            raise CliError(
                f"slurm.env.{name} holds a secret written into the config; it would be copied into the job script. "
                f"Export it in the shell you submit from and write `{name}: ${{env:{name}}}`, which passes it through"
            )
        if reference is not None and reference.group(1) != name:
            raise CliError(
                f"slurm.env.{name} refers to ${{env:{reference.group(1)}}}; a passed-through variable keeps its name, "
                f"so write `{name}: ${{env:{name}}}` and export {name} before submitting"
            )
        if reference is None:
            env[str(name)] = text
    return env


def _sbatch_options(section: Mapping[str, Any]) -> tuple[str, ...]:
    options = []
    for key in ("mem", "time", "account", "partition", "qos", "reservation", "constraint"):
        value = _text(section, key)
        if value is not None:
            options.append(f"--{key}={value}")
    exclusive = section.get("exclusive", False)
    if not isinstance(exclusive, bool):
        raise CliError(f"slurm.exclusive must be true or false, got {exclusive!r}")
    if exclusive:
        options.append("--exclusive")
    extra = _strings(section, "extra_sbatch_args")
    for arg in extra:
        if not arg.startswith("--"):
            raise CliError(f"slurm.extra_sbatch_args holds {arg!r}; give each option as --name=value")
    return (*options, *extra)


def parse_slurm_section(section: Mapping[str, Any], route_name: str, nproc_flag: int = 1) -> SlurmSettings:
    """Check the ``slurm:`` section and return its SlurmSettings.

    Args:
        section: the section as plain data (``${env:...}`` values unresolved).
        route_name: the route (``finetune.llm``), the default job name.
        nproc_flag: the CLI's ``--nproc-per-node``; when above 1 it sets the processes per node.

    Raises:
        CliError: an unknown key (with the closest known one), a value of the wrong type or
            range, or a secret written into ``env``.
    """
    check_keys(section, SLURM_KEYS, "slurm")
    gpus = _int(section, "gpus_per_node", 0, 0) or 0
    nproc = _int(section, "ntasks_per_node", gpus or 1, 1) or 1
    requeue = section.get("requeue", True)
    if not isinstance(requeue, bool):
        raise CliError(f"slurm.requeue must be true or false, got {requeue!r}")
    image = _text(section, "container_image")
    mounts = _strings(section, "container_mounts")
    if mounts and image is None:
        raise CliError("slurm.container_mounts needs slurm.container_image (the image to mount them into)")
    job_name = _text(section, "job_name") or route_name.replace(".", "-")
    return SlurmSettings(
        job_name=job_name,
        nodes=_int(section, "nodes", 1, 1) or 1,
        nproc_per_node=nproc_flag if nproc_flag > 1 else nproc,
        gpus_per_node=gpus,
        cpus_per_task=_int(section, "cpus_per_task", None, 1),
        sbatch=_sbatch_options(section),
        container_image=image,
        container_mounts=mounts,
        env=_env(section),
        setup=_strings(section, "setup"),
        job_dir=job_dir(section, job_name),
        requeue=requeue,
        signal_grace_s=_int(section, "signal_grace_s", 120, 1) or 120,
        rdzv_port=_int(section, "rdzv_port", 29500, 1) or 29500,
        python=_text(section, "python") or ("python" if image else sys.executable),
    )


def _header(settings: SlurmSettings) -> list[str]:
    lines = [
        f"--job-name={settings.job_name}",
        f"--nodes={settings.nodes}",
        "--ntasks-per-node=1",
        f"--output={settings.job_dir}/slurm-%j.out",
        "--open-mode=append",
        f"--signal=B:USR1@{settings.signal_grace_s}",
    ]
    if settings.gpus_per_node:
        lines.append(f"--gpus-per-node={settings.gpus_per_node}")
    if settings.cpus_per_task:
        lines.append(f"--cpus-per-task={settings.cpus_per_task}")
    if settings.requeue:
        lines.append("--requeue")
    return [f"#SBATCH {line}" for line in (*lines, *settings.sbatch)]


def _torchrun(job: Job, settings: SlurmSettings) -> str:
    config = str(settings.job_dir / CONFIG_FILE)
    command = [
        settings.python,
        "-m",
        "automodel.cli.torchrun",
        f"--nnodes={settings.nodes}",
        f"--nproc-per-node={settings.nproc_per_node}",
        "--rdzv-backend=c10d",
        "--rdzv-id=$SLURM_JOB_ID",
        f"--rdzv-endpoint=$head_addr:{settings.rdzv_port}",
        *job.remote_worker_args(config),
    ]
    # Parts holding $VARIABLES are double-quoted so the shell expands them on the node.
    return " ".join(f'"{part}"' if "$" in part else shlex.quote(part) for part in command)


def _srun(settings: SlurmSettings) -> str:
    parts = ["srun", "--kill-on-bad-exit=1", f"--nodes={settings.nodes}", "--ntasks-per-node=1"]
    if settings.container_image:
        parts.append(f"--container-image={shlex.quote(settings.container_image)}")
        if settings.container_mounts:
            parts.append(f"--container-mounts={shlex.quote(','.join(settings.container_mounts))}")
    return " ".join(parts)


def render_script(job: Job, settings: SlurmSettings, workdir: Path) -> str:
    """Return the sbatch script for ``job``: header, environment, setup, srun + torchrun, USR1 forwarding, requeue.

    Args:
        job: the job (its config is in ``<job_dir>/config.yaml``).
        settings: the checked ``slurm:`` section.
        workdir: the directory the job runs in (relative paths in the config are relative to it).
    """
    exports = [f"export {name}={shlex.quote(value)}" for name, value in sorted(settings.env.items())]
    requeue = (
        '  scontrol requeue "$SLURM_JOB_ID" && exit 0'
        if settings.requeue
        else '  echo "automodel: requeue is off; resume with restore_from: latest"'
    )
    lines = [
        "#!/bin/bash",
        f"# automodel {job.route.command} {job.route.domain} ({job.route.name}) on {settings.nodes} node(s)",
        *_header(settings),
        "set -uo pipefail",
        f"cd {shlex.quote(str(workdir))}",
        *exports,
        *settings.setup,
        "export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}",
        'head_node=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
        'head_addr=$(scontrol show node "$head_node" | sed -n "s/.*NodeAddr=\\([^ ]*\\).*/\\1/p")',
        "head_addr=${head_addr:-$head_node}",
        'echo "automodel: job $SLURM_JOB_ID start ${SLURM_RESTART_COUNT:-0} on $SLURM_JOB_NODELIST, '
        'rendezvous $head_addr"',
        "preempted=0",
        'forward_usr1() { preempted=1; echo "automodel: USR1: saving at the next step"; kill -USR1 "$srun_pid"; }',
        "trap forward_usr1 USR1",
        f"{_srun(settings)} {_torchrun(job, settings)} &",
        "srun_pid=$!",
        'while true; do wait "$srun_pid"; status=$?; kill -0 "$srun_pid" 2>/dev/null || break; done',
        'if [ "$preempted" = 1 ] && [ "$status" = 0 ]; then',
        '  echo "automodel: checkpoint saved after USR1; requeueing job $SLURM_JOB_ID"',
        requeue,
        "fi",
        'exit "$status"',
    ]
    return "\n".join(lines) + "\n"


def write_job_files(job: Job, settings: SlurmSettings, workdir: Path) -> tuple[Path, dict[str, str]]:
    """Write ``config.yaml`` and the script into the job directory (each under a temporary name, then renamed).

    With ``requeue`` the config gets ``checkpoint.auto_resume: true``, so every start after the
    first resumes from the run's latest checkpoint. A secret written as a literal (in the file
    or by an override) is not written: the config reads it as ``${env:AUTOMODEL_SECRET_<PATH>}``.

    Returns:
        The script's path, and the ``AUTOMODEL_SECRET_*`` variables the job must receive in its
        environment (sbatch passes on the environment it is run in).
    """
    settings.job_dir.mkdir(parents=True, exist_ok=True)
    if settings.requeue and "checkpoint" in job.config:
        job.config["checkpoint"]["auto_resume"] = True  # a requeued start continues from `latest`
    data, secret_env = secrets_to_environment(job.config.to_container(resolve=False))
    for name, text in ((CONFIG_FILE, dump_yaml(data)), (SCRIPT_FILE, render_script(job, settings, workdir))):
        partial = settings.job_dir / f".{name}.partial"
        partial.write_text(text, encoding="utf-8")
        partial.replace(settings.job_dir / name)
    script = settings.job_dir / SCRIPT_FILE
    script.chmod(0o755)
    return script, secret_env


def launch_slurm(job: Job) -> int:
    """Write the job's sbatch script and config, then submit it with sbatch (or, with ``--dry-run``, print it).

    Returns:
        0 when submitted (the job id is printed) or dry-run; sbatch's exit status when it fails.

    Raises:
        CliError: a bad ``slurm:`` section, multi-node CLI flags, or no ``sbatch`` on PATH.
    """
    options = job.options
    flags = ("nnodes", "node_rank", "master_addr", "master_port", "rdzv_endpoint")
    given = [f"--{flag.replace('_', '-')}" for flag in flags if getattr(options, flag) is not None]
    if given:
        raise CliError(
            f"{', '.join(given)} cannot be used with a `slurm:` section: SLURM places the nodes and the job script "
            "sets up their rendezvous; drop the flag(s) and set slurm.nodes instead"
        )
    settings = parse_slurm_section(job.section or {}, job.route.name, options.nproc_per_node)
    script, secret_env = write_job_files(job, settings, Path.cwd())
    passed = (
        f"; the config's literal secrets go to the job in its environment, never into a file: {', '.join(secret_env)}"
        if secret_env
        else ""
    )
    if options.dry_run:
        print(script.read_text(encoding="utf-8"), end="")
        print(f"# sbatch script written to {script} (not submitted: --dry-run){passed}")
        return 0
    sbatch = shutil.which("sbatch")
    if sbatch is None:
        raise CliError(
            f"sbatch is not on PATH, so the job cannot be submitted from this machine; the script is in {script} "
            "(submit it from a login node with sbatch), or use --dry-run to only write it"
        )
    environment = {**os.environ, **secret_env}  # sbatch exports its environment to the job
    result = subprocess.run([sbatch, "--parsable", str(script)], capture_output=True, text=True, env=environment)
    if result.returncode:
        print(result.stderr.strip(), file=sys.stderr)
        return result.returncode
    job_id = result.stdout.strip().split(";")[0]
    print(f"submitted SLURM job {job_id}: script {script}, log {settings.job_dir}/slurm-{job_id}.out{passed}")
    return 0
