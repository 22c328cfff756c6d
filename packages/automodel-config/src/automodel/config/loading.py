"""Loading a config from a file (or argv) with overrides applied and the user's permissions attached."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from automodel.config.errors import ConfigError
from automodel.config.instantiate import refuse_self_granted_permissions
from automodel.config.node import ConfigNode, config_from_dict
from automodel.config.overrides import SOURCE, apply_overrides, parse_overrides
from automodel.config.remote_code import TRUST_FLAG, check_remote_code, remote_code_allowed
from automodel.config.targets import ALLOW_FLAG
from automodel.config.yaml_io import load_yaml_file


def load_config(
    path: str | Path,
    overrides: Sequence[str] = (),
    *,
    allow_targets: Sequence[str] = (),
    trust_remote_code: bool = False,
) -> ConfigNode:
    """Load a YAML config file and apply command-line style overrides.

    Args:
        path: the YAML file.
        overrides: tokens such as ``["--optimizer.lr", "1e-4", "--+wandb.project=x", "--~peft"]``.
        allow_targets: the user's ``--allow-target`` names: module prefixes or exact callables
            the config's ``_target_`` may call besides the defaults and $AUTOMODEL_TARGET_ALLOWLIST.
        trust_remote_code: the user's ``--trust-remote-code``: the file may set
            ``trust_remote_code: true`` (so may $AUTOMODEL_TRUST_REMOTE_CODE=1).

    Returns the root ConfigNode; ``${...}`` references resolve when values are read.
    Raises ConfigError for any problem with the file or the overrides, for a ``target_allowlist``
    key (a config may not grant itself permissions), and for a true ``trust_remote_code`` the
    file sets without the user's permission.
    """
    data, locations = load_yaml_file(path)
    apply_overrides(data, parse_overrides(overrides), locations)
    root = config_from_dict(data, file=str(path), locations=locations)
    root._root.allow_targets = tuple(allow_targets)
    refuse_self_granted_permissions(root)
    check_remote_code(root, remote_code_allowed(trust_remote_code))
    return root


def split_config_args(argv: Sequence[str]) -> tuple[str, list[str]]:
    """Split ``-c cfg.yaml [overrides...]`` (``--config`` also accepted) into (path, overrides)."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)  # `--co 1` is an override
    parser.add_argument("-c", "--config")
    known, rest = parser.parse_known_args(list(argv))
    if not known.config:
        raise ConfigError("no config file given", hint="pass -c path/to/config.yaml")
    return known.config, rest


def load_config_from_argv(argv: Sequence[str] | None = None) -> ConfigNode:
    """Load the config named by ``-c`` in ``argv`` (default ``sys.argv[1:]``) with the remaining overrides.

    ``--allow-target NAME`` (repeatable) and ``--trust-remote-code`` in ``argv`` are the user's
    permissions (see ``load_config``), not overrides.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument(ALLOW_FLAG, action="append", default=[], dest="allow_targets")
    parser.add_argument(TRUST_FLAG, action="store_true", dest="trust_remote_code")
    try:
        permissions, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    except argparse.ArgumentError as exc:
        raise ConfigError(f"{exc}", file=SOURCE, hint=f"write {ALLOW_FLAG} NAME (a module or callable)") from None
    path, overrides = split_config_args(rest)
    return load_config(
        path, overrides, allow_targets=permissions.allow_targets, trust_remote_code=permissions.trust_remote_code
    )
