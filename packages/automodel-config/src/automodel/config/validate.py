"""Checking a config without building it: targets import, keywords exist, references resolve."""

from __future__ import annotations

from typing import Any

from automodel.config.errors import ConfigError
from automodel.config.instantiate import PARTIAL_KEY, ROOT_ONLY_KEYS, SPECIAL_KEYS, TARGET_KEY, config_prefixes
from automodel.config.node import ConfigList, ConfigNode
from automodel.config.targets import import_config_target, keyword_problem


class ConfigErrors(ConfigError):
    """Several ConfigErrors found at once; ``errors`` holds them, the message lists them all."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = list(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"{len(self.errors)} problem(s) in the config:\n{lines}")

    def __str__(self) -> str:
        return self.message


def _at(node: ConfigNode | ConfigList, key: Any, error: ConfigError) -> ConfigError:
    if error.path is None:
        path = (*node._path, key)
        error.path = ".".join(map(str, path))
        error.file, error.line = node._root.locations.get(path, (node._root.file, None))
    return error


def _check_section(node: ConfigNode, prefixes: tuple[str, ...], found: list[ConfigError]) -> None:
    try:
        target = import_config_target(node[TARGET_KEY], node._raw()[TARGET_KEY], prefixes)
    except ConfigError as exc:
        found.append(_at(node, TARGET_KEY, exc))
        return
    partial = node._raw().get(PARTIAL_KEY, False)
    if not isinstance(partial, bool):
        found.append(_at(node, PARTIAL_KEY, ConfigError("`_partial_` must be true or false")))
    skip = SPECIAL_KEYS | (ROOT_ONLY_KEYS if not node._path else frozenset())
    keywords = [k for k in node._raw() if k not in skip]
    remaining = list(keywords)
    while remaining:
        problem = keyword_problem(target, remaining)
        if problem is None:
            break
        bad, suggestion = problem
        hint = f"did you mean `{suggestion}`?" if suggestion else "remove it or check the target's signature"
        found.append(_at(node, bad, ConfigError(f"`{node._raw()[TARGET_KEY]}` takes no argument `{bad}`", hint=hint)))
        remaining.remove(bad)


def _walk(value: Any, prefixes: tuple[str, ...], found: list[ConfigError]) -> None:
    if isinstance(value, ConfigNode):
        keys = list(value)
        if TARGET_KEY in keys:
            _check_section(value, prefixes, found)
            keys.remove(TARGET_KEY)  # already read (and any problem reported) by _check_section
    elif isinstance(value, ConfigList):
        keys = list(range(len(value)))
    else:
        return
    for key in keys:
        try:
            child = value[key]
        except ConfigError as exc:
            found.append(exc)
            continue
        if isinstance(child, (ConfigNode, ConfigList)) and child._path[: len(value._path) + 1] == (*value._path, key):
            _walk(child, prefixes, found)


def find_problems(config: ConfigNode) -> list[ConfigError]:
    """Return every problem in ``config`` without building anything heavy.

    Checks that every ``_target_`` is allowed and imports, that each of its sibling keys is
    a keyword the callable accepts, and that every ``${...}`` resolves. Each problem names
    the YAML path, file and line, and the closest valid name where one is close.
    """
    found: list[ConfigError] = []
    try:
        prefixes = config_prefixes(config)
    except ConfigError as exc:
        return [exc]
    _walk(config, prefixes, found)
    return found


def validate(config: ConfigNode) -> None:
    """Raise ConfigErrors listing every problem ``find_problems`` reports; return None when clean."""
    found = find_problems(config)
    if len(found) == 1:
        raise found[0]
    if found:
        raise ConfigErrors(found)
