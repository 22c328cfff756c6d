"""A throwaway local SLURM cluster for end-to-end tests: one munged, one slurmctld and N slurmd on this host.

Everything (munge key and socket, slurm.conf, state, spool, logs) lives under one root directory; no
configuration is read from /etc/slurm or /etc/munge and nothing is written outside the root. Each node is its
own ``slurmd -N nodeK`` listening on its own port, which Debian's slurm-wlm 22.05 supports as built. The
daemons run in the foreground as children of the test process and are stopped by ``Cluster.stop()``.
It needs root (SlurmUser/SlurmdUser=root).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REQUIRED = ("munged", "slurmctld", "slurmd", "sbatch", "srun", "scontrol", "scancel", "sinfo", "squeue")
SBIN_DIRS = ("/usr/sbin", "/usr/local/sbin", "/sbin")
FINAL_STATES = frozenset(
    {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE"}
)
START_TIMEOUT = 20.0
MAX_SOCKET_PATH = 100  # sun_path is 108 bytes; slurmd puts sockets named after the node and step in its spool
SLURM_CONF = """\
ClusterName=localtest
SlurmctldHost={hostname}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire (minimum 5 s, default 120 s) also sets how long a requeued job waits before it may run again.
AuthInfo=socket={munge_socket},cred_expire=5
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=sched_interval=1,bf_interval=1
SlurmdParameters=config_overrides
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MailProg=/bin/true
ReturnToService=2
JobRequeue=1
KillWait=1
MinJobAge=600
MessageTimeout=5
SlurmctldTimeout=10
SlurmdTimeout=10
InactiveLimit=0
Waittime=0
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool/%n
SlurmctldPidFile={root}/run/slurmctld.pid
SlurmdPidFile={root}/run/slurmd-%n.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd-%n.log
PlugStackConfig={root}/etc/plugstack.conf
{node_lines}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""
NODE_LINE = (
    "NodeName={name} NodeHostname={hostname} NodeAddr=127.0.0.1 Port={port} CPUs={cpus} RealMemory=256 State=UNKNOWN"
)


def _which(name: str) -> str | None:
    """Path of the executable ``name`` on PATH or in the sbin directories (often missing from a user's PATH)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), *SBIN_DIRS]))


def slurm_available() -> str | None:
    """None when a local cluster can be started here, else the reason it cannot (for ``pytest.skip``)."""
    missing = [name for name in REQUIRED if _which(name) is None]
    if missing:
        return f"SLURM/munge not installed (missing {', '.join(missing)}; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "the local SLURM test cluster runs slurmd as root; not root here"
    return None


def _free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports that are free right now (held open together so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _parse_fields(text: str) -> dict[str, str]:
    """The ``Key=Value`` pairs of one-line ``scontrol -o show ...`` output (values without spaces)."""
    return dict(re.findall(r"(?:^|\s)([A-Za-z][\w:/]*)=(\S*)", text))


def _tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file, framed by its name."""
    text = path.read_text(errors="replace").splitlines()[-lines:] if path.exists() else ["(missing)"]
    return f"--- {path.name} ---\n" + "\n".join(text)


@dataclass
class Cluster:
    """A running local cluster: ``env`` is the environment every SLURM client (and job) must use."""

    root: Path
    nodes: list[str]
    env: dict[str, str]
    _procs: dict[str, subprocess.Popen] = field(default_factory=dict)

    def __enter__(self) -> Cluster:
        """Use the cluster in a ``with`` block; it is stopped on exit."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop the cluster."""
        self.stop()

    def run(self, args: list[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a SLURM command (``["sinfo", ...]``) against this cluster; raise with its stderr if it fails."""
        result = subprocess.run(args, env=self.env, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(f"{args} exited {result.returncode}:\n{result.stdout}{result.stderr}")
        return result

    def submit(self, args: list[str]) -> str:
        """Submit a batch job (``args`` are sbatch options then the script) and return its job id."""
        return self.run(["sbatch", "--parsable", *args]).stdout.strip().split(";")[0]

    def show_job(self, job_id: str) -> dict[str, str]:
        """The fields of ``scontrol show job`` (JobState, ExitCode, Restarts, NodeList, ...)."""
        return _parse_fields(self.run(["scontrol", "-o", "show", "job", str(job_id)]).stdout)

    def wait_job(self, job_id: str, timeout: float = 60, states: frozenset[str] = FINAL_STATES) -> dict[str, str]:
        """Poll the job until its JobState is in ``states`` (default: finished) and return its fields."""
        deadline = time.monotonic() + timeout
        while True:
            job = self.show_job(job_id)
            if job.get("JobState") in states:
                return job
            if time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.get('JobState')} after {timeout} s: {job}")
            time.sleep(0.1)

    def node_states(self) -> dict[str, str]:
        """Each node's state as ``sinfo`` reports it (``idle``, ``alloc``, ``down*`` ...)."""
        out = self.run(["sinfo", "-h", "-N", "-o", "%N %t"], check=False).stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def logs(self) -> str:
        """The tails of every daemon log, for error messages."""
        return "\n".join(_tail(path) for path in sorted((self.root / "log").iterdir()))

    def stop(self) -> None:
        """Cancel every job, then stop the daemons (slurmd, slurmctld, munged last)."""
        if "slurmctld" in self._procs and self._procs["slurmctld"].poll() is None:
            self._cancel_all_jobs()
        for name, proc in reversed(list(self._procs.items())):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            del self._procs[name]

    def _cancel_all_jobs(self) -> None:
        """Cancel all jobs and give their steps a few seconds to go, so no job outlives the cluster."""
        self.run(["scancel", "--user=root"], check=False)
        deadline = time.monotonic() + 5
        while self.run(["squeue", "-h"], check=False).stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _spawn(self, name: str, args: list[str]) -> None:
        """Start one foreground daemon (found on ``env``'s PATH, which has the sbin dirs), output to log/<name>.out."""
        with open(self.root / "log" / f"{name}.out", "wb") as out:
            self._procs[name] = subprocess.Popen(
                args, env=self.env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )

    def _wait_munge(self, timeout: float) -> None:
        """Wait until munged's socket exists; raise with the logs if it does not appear within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not (self.root / "munge" / "munge.socket.2").exists():
            if time.monotonic() > deadline or self._procs["munged"].poll() is not None:
                raise RuntimeError(f"munged did not start\n{self.logs()}")
            time.sleep(0.02)

    def _wait_idle(self, timeout: float) -> None:
        """Wait until every node is idle; raise with the daemons' log tails if not within ``timeout``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            dead = [name for name, proc in self._procs.items() if proc.poll() is not None]
            if dead:
                raise RuntimeError(f"SLURM daemon(s) {dead} exited during startup\n{self.logs()}")
            states = self.node_states()
            if all(states.get(node) == "idle" for node in self.nodes):
                return
            time.sleep(0.1)
        raise RuntimeError(f"SLURM nodes not idle after {timeout} s: {self.node_states()}\n{self.logs()}")


def _client_env(conf: Path) -> dict[str, str]:
    """This process's environment without any outer job's SLURM_* variables, pointing at ``conf``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("SLURM_", "SBATCH_", "SRUN_"))}
    env["PATH"] = os.pathsep.join([env.get("PATH", ""), *SBIN_DIRS])
    env["SLURM_CONF"] = str(conf)
    return env


def _make_dirs(root: Path, nodes: list[str]) -> None:
    """Create the directory tree; munged insists that its key and directories are not group/other writable."""
    for sub in ("etc", "state", "run", "log", *(f"spool/{node}" for node in nodes)):
        (root / sub).mkdir(parents=True, exist_ok=True)
    munge = root / "munge"
    munge.mkdir(exist_ok=True)
    munge.chmod(0o755)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    (root / "etc" / "plugstack.conf").write_text("")


def _write_conf(root: Path, nodes: list[str], cpus_per_node: int) -> Path:
    """Write slurm.conf with free ports for slurmctld and every slurmd; return its path."""
    hostname = socket.gethostname()
    ctld_port, slurmd_port, *node_ports = _free_ports(2 + len(nodes))
    node_lines = "\n".join(
        NODE_LINE.format(name=node, hostname=hostname, port=port, cpus=cpus_per_node)
        for node, port in zip(nodes, node_ports, strict=True)
    )
    text = SLURM_CONF.format(
        hostname=hostname,
        ctld_port=ctld_port,
        slurmd_port=slurmd_port,
        munge_socket=root / "munge" / "munge.socket.2",
        root=root,
        node_lines=node_lines,
    )
    conf = root / "etc" / "slurm.conf"
    conf.write_text(text)
    return conf


def _munged_args(root: Path) -> list[str]:
    """munged in the foreground (logging to stderr) on a private socket.

    --force: munged refuses a socket directory whose parents are not world-executable, as pytest's tmp dirs are.
    """
    munge = root / "munge"
    return [
        "munged",
        "--foreground",
        "--force",
        f"--socket={munge / 'munge.socket.2'}",
        f"--key-file={munge / 'munge.key'}",
        f"--seed-file={munge / 'munged.seed'}",
        f"--pid-file={root / 'run' / 'munged.pid'}",
    ]


def start_cluster(root: Path, nodes: int = 2, cpus_per_node: int = 2) -> Cluster:
    """Start munged, slurmctld and ``nodes`` slurmd (node1..nodeN) under ``root`` and wait until all are idle."""
    root = Path(root).resolve()
    if len(str(root / "spool" / f"node{nodes}")) + 30 > MAX_SOCKET_PATH:
        raise ValueError(f"{root} is too long for the daemons' unix socket paths; use a shorter directory")
    names = [f"node{i}" for i in range(1, nodes + 1)]
    _make_dirs(root, names)
    conf = _write_conf(root, names, cpus_per_node)
    cluster = Cluster(root=root, nodes=names, env=_client_env(conf))
    try:
        cluster._spawn("munged", _munged_args(root))
        cluster._wait_munge(timeout=5)
        cluster._spawn("slurmctld", ["slurmctld", "-D", "-f", str(conf)])
        for name in names:
            cluster._spawn(f"slurmd-{name}", ["slurmd", "-D", "-N", name, "-f", str(conf)])
        cluster._wait_idle(START_TIMEOUT)
    except BaseException:
        cluster.stop()
        raise
    return cluster
