"""``trust_remote_code``: a config file may turn it on only when the user allows it on the command line or environment.

``trust_remote_code: true`` makes transformers (and datasets) import Python code shipped in a
model folder or hub repository. A config can come from anywhere, so a true value written in the
file is refused unless the user passed ``--trust-remote-code``, set
``AUTOMODEL_TRUST_REMOTE_CODE=1``, or typed the value themselves as an override
(``--model.trust_remote_code true``).
"""

from __future__ import annotations

import os
from typing import Any

from automodel.config.errors import ConfigError
from automodel.config.node import ConfigList, ConfigNode, dotted
from automodel.config.overrides import SOURCE

TRUST_KEY = "trust_remote_code"
TRUST_ENV = "AUTOMODEL_TRUST_REMOTE_CODE"
TRUST_FLAG = "--trust-remote-code"
_YES = frozenset({"1", "true", "yes", "on"})


def remote_code_allowed(flag: bool = False) -> bool:
    """True when the user allows remote code: ``flag`` (``--trust-remote-code``) or $AUTOMODEL_TRUST_REMOTE_CODE=1."""
    return flag or os.environ.get(TRUST_ENV, "").strip().lower() in _YES


def _trust_paths(data: Any, path: tuple = ()) -> list[tuple]:
    if isinstance(data, dict):
        here = [(*path, key) for key in data if key == TRUST_KEY]
        return here + [p for key, value in data.items() for p in _trust_paths(value, (*path, key))]
    if isinstance(data, list):
        return [p for index, value in enumerate(data) for p in _trust_paths(value, (*path, index))]
    return []


def _value_at(config: ConfigNode, path: tuple) -> Any:
    node: Any = config
    for part in path:
        node = node[part]
    return node


def remote_code_requests(config: ConfigNode | ConfigList) -> list[str]:
    """Return the dotted path of every ``trust_remote_code`` key in the config whose value (resolved) is true.

    Raises ConfigError when such a value cannot be resolved (a missing ``${env:...}``).
    """
    root = ConfigNode(config._root, ())
    return [dotted(path) for path in _trust_paths(root._raw()) if bool(_value_at(root, path))]


def trusts_remote_code(config: ConfigNode | ConfigList) -> bool:
    """True when any ``trust_remote_code`` key in the config is true (after references resolve)."""
    return bool(remote_code_requests(config))


def _written_at(config: ConfigNode, path: tuple) -> tuple[str | None, int | None]:
    locations = config._root.locations
    for end in range(len(path), -1, -1):
        if path[:end] in locations:
            return locations[path[:end]]
    return config._root.file, None


def check_remote_code(config: ConfigNode, allowed: bool) -> None:
    """Refuse a true ``trust_remote_code`` that the config file sets by itself.

    Args:
        config: the loaded config (its source lines tell what the command line set).
        allowed: the user's permission (``remote_code_allowed(flag)``); when true nothing is refused.

    Raises:
        ConfigError: at the first true ``trust_remote_code`` written in the file (not set by an
            override), naming its key, file and line, saying why and how to allow it.
    """
    if allowed:
        return
    root = ConfigNode(config._root, ())
    for path in _trust_paths(root._raw()):
        file, line = _written_at(root, path)
        if file != SOURCE and bool(_value_at(root, path)):
            key = dotted(path)
            raise ConfigError(
                "is true in the config file; it would run Python code shipped with the model (its folder or hub "
                "repository), and a config file may not turn that on by itself",
                path=key,
                file=file,
                line=line,
                hint=f"if you trust that code, pass {TRUST_FLAG} to the automodel command, set {TRUST_ENV}=1, "
                f"or give the value on the command line yourself (--{key} true)",
            )
