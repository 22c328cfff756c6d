"""Loading a config from a file (or argv) with overrides applied."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from automodel.config.errors import ConfigError
from automodel.config.node import ConfigNode, config_from_dict
from automodel.config.overrides import apply_overrides, parse_overrides
from automodel.config.yaml_io import load_yaml_file


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> ConfigNode:
    """Load a YAML config file and apply command-line style overrides.

    Args:
        path: the YAML file.
        overrides: tokens such as ``["--optimizer.lr", "1e-4", "--+wandb.project=x", "--~peft"]``.

    Returns the root ConfigNode; ``${...}`` references resolve when values are read.
    Raises ConfigError for any problem with the file or the overrides.
    """
    data, locations = load_yaml_file(path)
    apply_overrides(data, parse_overrides(overrides), locations)
    root = config_from_dict(data, file=str(path), locations=locations)
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
    """Load the config named by ``-c`` in ``argv`` (default ``sys.argv[1:]``) with the remaining overrides."""
    path, overrides = split_config_args(sys.argv[1:] if argv is None else argv)
    return load_config(path, overrides)
