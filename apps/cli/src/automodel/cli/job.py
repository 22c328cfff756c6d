"""What every launcher is handed: one job (route, config, launcher flags and section) and its job directory.

A launcher is any callable ``launch(job) -> exit status``; the YAML picks it: no launcher
section runs locally, ``slurm:`` submits with sbatch, ``k8s:`` applies a PyTorchJob.
"""

from __future__ import annotations

import difflib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automodel.cli.errors import CliError
from automodel.cli.launch import LaunchOptions
from automodel.cli.routes import Route

LAUNCHER_SECTIONS = ("slurm", "k8s")
_SECRET_ENDINGS = ("token", "key", "password", "passwd", "secret", "secrets", "credential", "credentials")
CONFIG_FILE = "config.yaml"


@dataclass(frozen=True)
class Job:
    """One run to launch.

    Attributes:
        route: the recipe to run.
        config: the config with command-line overrides applied and the launcher section removed:
            what the recipe receives.
        config_path: the user's YAML file (for messages).
        options: the launcher flags (``--nproc-per-node``, ``--dry-run``, ...).
        launcher: ``local``, ``slurm`` or ``k8s``.
        section: the launcher section as plain data (empty for local).
    """

    route: Route
    config: Any
    config_path: Path
    options: LaunchOptions
    launcher: str = "local"
    section: Mapping[str, Any] | None = None

    def config_yaml(self) -> str:
        """The config a remote job runs, as YAML: overrides applied, ``${...}`` kept for the job to resolve.

        References such as ``${env:HF_TOKEN}`` are resolved where the job runs, so a secret
        stays in the submitter's (or the cluster's) environment and is never written here.
        """
        return self.config.to_yaml(resolve=False, redact=False)

    def remote_worker_args(self, config_file: str) -> list[str]:
        """Arguments after ``python`` that run one recipe process on ``config_file`` (what torchrun starts)."""
        return ["-m", "automodel.cli.worker", self.route.name, "-c", config_file]


Launcher = Callable[[Job], int]


def split_launcher(config: Any) -> tuple[str, dict[str, Any], Any]:
    """Return ``(launcher name, its section as plain data, the config without it)``; the config loses it in place.

    Raises:
        CliError: both a ``slurm:`` and a ``k8s:`` section, or a launcher section that is not a mapping.
    """
    present = [name for name in LAUNCHER_SECTIONS if name in config]
    if not present:
        return "local", {}, config
    if len(present) > 1:
        raise CliError(
            f"the config has both `{present[0]}:` and `{present[1]}:` sections; keep the one for the cluster "
            f"to submit to, e.g. with --~{present[1]}"
        )
    name = present[0]
    section = config[name]
    # Unresolved: an `${env:NAME}` value stays a reference, so a secret is never copied out of the environment.
    plain = section.to_container(resolve=False) if hasattr(section, "to_container") else section
    del config[name]
    if not isinstance(plain, Mapping):
        raise CliError(f"the `{name}:` section must be a mapping of launcher settings, got {plain!r}")
    return name, dict(plain), config


def check_keys(section: Mapping[str, Any], known: tuple[str, ...], name: str) -> None:
    """Raise CliError for a key of ``section`` not in ``known``, naming ``name.key`` and the closest known key."""
    for key in section:
        if key not in known:
            match = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean `{match[0]}`? " if match else ""
            raise CliError(f"{name}.{key} is not a {name} setting; {hint}known keys: {', '.join(known)}")


def job_dir(section: Mapping[str, Any], name: str, default_root: str = "automodel_jobs") -> Path:
    """Return the job directory: ``section['job_dir']``, else ``<default_root>/<name>-<YYYYmmdd-HHMMSS>``."""
    given = section.get("job_dir")
    if given:
        return Path(str(given)).resolve()
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "job"
    return Path(default_root, f"{safe}-{time.strftime('%Y%m%d-%H%M%S')}").resolve()


def looks_secret(name: str) -> bool:
    """True when an environment variable name reads like a secret (``HF_TOKEN``, ``WANDB_API_KEY``, ``DB_PASSWORD``).

    The name is split into words on non-letters and camelCase; a word ending in token, key,
    password, secret or credential marks it (so ``TOKENIZERS_PARALLELISM`` is not one).
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return any(word.endswith(_SECRET_ENDINGS) for word in re.split(r"[^a-z0-9]+", spaced.lower()))
