"""What every launcher is handed: one job (route, config, launcher flags and section) and its job directory.

A launcher is any callable ``launch(job) -> exit status``; the YAML picks it: no launcher
section runs locally, ``slurm:`` submits with sbatch, ``k8s:`` applies a PyTorchJob.
"""

from __future__ import annotations

import copy
import difflib
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automodel.cli.errors import CliError
from automodel.cli.launch import LaunchOptions, permission_args
from automodel.cli.routes import Route
from automodel.config import (
    DEFAULT_ALLOWED_PREFIXES,
    TARGET_ALLOWLIST_ENV,
    TRUST_REMOTE_CODE_ENV,
    literal_secret_paths,
    target_allowances,
    trusts_remote_code,
)

LAUNCHER_SECTIONS = ("slurm", "k8s")
_SECRET_ENDINGS = ("token", "key", "password", "passwd", "secret", "secrets", "credential", "credentials")
CONFIG_FILE = "config.yaml"
SECRET_ENV_PREFIX = "AUTOMODEL_SECRET_"


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
        """Arguments after ``python`` that run one recipe process on ``config_file`` (what torchrun starts).

        The user's permissions travel on this command line, never in the config: every
        ``_target_`` allowance in effect at submission (``--allow-target`` and
        $AUTOMODEL_TARGET_ALLOWLIST) as ``--allow-target NAME``, and ``--trust-remote-code`` when
        the config sets ``trust_remote_code: true`` (which loading it here has already allowed).
        """
        allowances = target_allowances(self.options.allow_targets)
        extensions = [name for name, _ in allowances if name not in DEFAULT_ALLOWED_PREFIXES]
        permissions = permission_args(extensions, trusts_remote_code(self.config))
        return ["-m", "automodel.cli.worker", self.route.name, "-c", config_file, *permissions]


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


def secret_paths(config: Any) -> list[str]:
    """Return the dotted keys of the secrets written as literals in a job's config (in its file or by an override)."""
    return [".".join(map(str, path)) for path in literal_secret_paths(config.to_container(resolve=False))]


def _variable(path: tuple, taken: Mapping[str, str]) -> str:
    base = SECRET_ENV_PREFIX + re.sub(r"[^A-Za-z0-9]+", "_", "_".join(map(str, path))).strip("_").upper()
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    return name


def secrets_to_environment(data: dict) -> tuple[dict, dict[str, str]]:
    """Take every literal secret out of plain config data, for a job that receives them in its environment.

    Args:
        data: the job's config as plain data, ``${...}`` unresolved.

    Returns:
        A copy of ``data`` in which each literal secret is the reference
        ``${env:AUTOMODEL_SECRET_<PATH>}`` (``model.hf_token`` -> ``AUTOMODEL_SECRET_MODEL_HF_TOKEN``),
        and the variables to set for the job, ``{name: value}``. References such as
        ``${env:HF_TOKEN}`` stay as they are.
    """
    data = copy.deepcopy(data)
    environment: dict[str, str] = {}
    for path in literal_secret_paths(data):
        parent: Any = data
        for part in path[:-1]:
            parent = parent[part]
        name = _variable(path, environment)
        environment[name] = str(parent[path[-1]])
        parent[path[-1]] = f"${{env:{name}}}"
    return data, environment


def refuse_permission_variable(where: str, name: str) -> None:
    """Raise CliError when a launcher section sets a variable that grants permissions (a config may not).

    Args:
        where: the key for the message (``slurm.env.AUTOMODEL_TARGET_ALLOWLIST``).
        name: the environment variable the section sets.
    """
    if name in (TARGET_ALLOWLIST_ENV, TRUST_REMOTE_CODE_ENV):
        raise CliError(
            f"{where} would let the config grant itself permissions, which a config may not; pass --allow-target "
            f"NAME or --trust-remote-code to the automodel command instead (the job gets them on its command line)"
        )


def looks_secret(name: str) -> bool:
    """True when an environment variable name reads like a secret (``HF_TOKEN``, ``WANDB_API_KEY``, ``DB_PASSWORD``).

    The name is split into words on non-letters and camelCase; a word ending in token, key,
    password, secret or credential marks it (so ``TOKENIZERS_PARALLELISM`` is not one).
    """
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return any(word.endswith(_SECRET_ENDINGS) for word in re.split(r"[^a-z0-9]+", spaced.lower()))
