"""Building objects from ``_target_`` sections, depth first."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from automodel.config.errors import ConfigError
from automodel.config.node import ConfigList, ConfigNode, config_from_dict, yaml_path
from automodel.config.redact import shown_value
from automodel.config.targets import (
    ALLOW_FLAG,
    ALLOWLIST_ENV,
    ALLOWLIST_KEY,
    allowed_prefixes,
    import_config_target,
    keyword_problem,
)

TARGET_KEY = "_target_"
PARTIAL_KEY = "_partial_"
SPECIAL_KEYS = frozenset({TARGET_KEY, PARTIAL_KEY})
ROOT_ONLY_KEYS = frozenset({"recipe"})  # settings of the config itself, never keyword arguments


def refuse_self_granted_permissions(node: ConfigNode | ConfigList) -> None:
    """Raise ConfigError, at its line, when the config holds a top-level ``target_allowlist``.

    A config may not grant itself permissions: extensions of the allowed ``_target_`` modules
    come only from ``--allow-target`` and $AUTOMODEL_TARGET_ALLOWLIST.
    """
    top = ConfigNode(node._root, ())
    if ALLOWLIST_KEY in top:
        raise top._error(
            "a config may not grant itself permissions: it cannot extend the modules `_target_` may call",
            ALLOWLIST_KEY,
            f"remove the key; extensions come only from the command line (`{ALLOW_FLAG} NAME`, repeatable, a module "
            f"prefix or one exact callable such as os.path.join) or the environment ({ALLOWLIST_ENV}=a,b)",
        )


def config_prefixes(node: ConfigNode | ConfigList) -> tuple[str, ...]:
    """Return the allowed ``_target_`` prefixes for a config's targets.

    They are the defaults, $AUTOMODEL_TARGET_ALLOWLIST and the ``--allow-target`` names the
    config was loaded with. Raises ConfigError for a ``target_allowlist`` key in the config.
    """
    refuse_self_granted_permissions(node)
    return allowed_prefixes(node._root.allow_targets)


def _located(error: ConfigError, node: ConfigNode, key: Any = None) -> ConfigError:
    if error.path is None:
        path = node._path if key is None else (*node._path, key)
        error.path = ".".join(map(str, path)) or None
        error.file, error.line = node._root.locations.get(path, (node._root.file, error.line))
    return error


def _build(value: Any, prefixes: tuple[str, ...], runtime_kwargs: Mapping | None = None) -> Any:
    if isinstance(value, ConfigNode):
        if TARGET_KEY not in value:
            return {k: _build(value[k], prefixes) for k in value}
        return _call(value, prefixes, runtime_kwargs or {})
    if isinstance(value, ConfigList):
        return [_build(item, prefixes) for item in value]
    return value


def _call(node: ConfigNode, prefixes: tuple[str, ...], runtime_kwargs: Mapping) -> Any:
    written = node._raw()[TARGET_KEY]
    try:
        target = import_config_target(node[TARGET_KEY], written, prefixes)
    except ConfigError as exc:
        raise _located(exc, node, TARGET_KEY) from None
    partial = node.get(PARTIAL_KEY, False)
    if not isinstance(partial, bool):
        shown = shown_value((*node._path, PARTIAL_KEY), node._raw()[PARTIAL_KEY])
        raise _located(ConfigError(f"`{PARTIAL_KEY}` must be true or false, got {shown}"), node, PARTIAL_KEY)
    skip = SPECIAL_KEYS | (ROOT_ONLY_KEYS if not node._path else frozenset())
    kwargs = {k: _build(node[k], prefixes) for k in node if k not in skip and k not in runtime_kwargs}
    kwargs.update(runtime_kwargs)
    problem = keyword_problem(target, [k for k in kwargs if k not in runtime_kwargs])
    if problem:
        bad, suggestion = problem
        raise _located(
            ConfigError(
                f"`{written}` takes no argument `{bad}`",
                hint=f"did you mean `{suggestion}`?" if suggestion else "remove it or check the target's signature",
            ),
            node,
            bad,
        )
    if partial:
        return functools.partial(target, **kwargs)
    try:
        return target(**kwargs)
    except Exception as exc:
        if hasattr(exc, "add_note"):
            where = yaml_path(node) or "<root>"
            exc.add_note(f"while building config section `{where}` (_target_: {written})")
        raise


def instantiate(config: Any, **kwargs: Any) -> Any:
    """Build the object a config section describes.

    Args:
        config: a ConfigNode / ConfigList (or plain dict/list) whose ``_target_`` names a
            callable. Nested sections with ``_target_`` are built first (depth first), lists
            element-wise; sections without ``_target_`` become plain dicts. ``_partial_: true``
            returns a ``functools.partial`` instead of calling.
        **kwargs: runtime keyword arguments for the top-level call; they win over the file's.

    Returns the built object. Raises ConfigError (naming the YAML path, file and line) for
    a disallowed or missing target or an unknown keyword; errors raised by the callable
    itself propagate with a note naming the section.
    """
    if isinstance(config, (Mapping, list)) and not isinstance(config, (ConfigNode, ConfigList)):
        config = config_from_dict({"_": config})["_"] if isinstance(config, list) else config_from_dict(config)
    if not isinstance(config, (ConfigNode, ConfigList)):
        raise ConfigError(f"cannot instantiate a {type(config).__name__}; expected a config section with `_target_`")
    prefixes = config_prefixes(config)
    if isinstance(config, ConfigList):
        return _build(config, prefixes)
    if TARGET_KEY not in config:
        raise ConfigError("this section has no `_target_` to build", path=yaml_path(config) or None)
    return _build(config, prefixes, kwargs)
