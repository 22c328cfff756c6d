"""Command-line overrides: ``--a.b VALUE``, ``--a.b=VALUE``, ``--+new.key VALUE``, ``--~a.b``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from automodel.config.errors import ConfigError, did_you_mean
from automodel.config.yaml_io import Locations, parse_yaml_value

_SEGMENT = r"(?:[A-Za-z_][A-Za-z0-9_\-]*|[0-9]+)"
_KEY = re.compile(rf"^{_SEGMENT}(?:\.{_SEGMENT})*$")
SOURCE = "command line"


@dataclass(frozen=True)
class Override:
    """One parsed override.

    Attributes:
        op: ``set`` (existing section), ``add`` (``+``, may create a section) or ``delete`` (``~``).
        path: key path, list indices as ints.
        value: the YAML-parsed value (None for deletes).
        text: the override as the user wrote it, for messages.
    """

    op: str
    path: tuple
    value: Any
    text: str


def _parse_key(raw: str, text: str) -> tuple[str, tuple]:
    op = "set"
    if raw.startswith(("+", "~")):
        op = "add" if raw[0] == "+" else "delete"
        raw = raw[1:]
    if not _KEY.match(raw):
        raise ConfigError(
            f"override `{text}` has a malformed key `{raw}`",
            file=SOURCE,
            hint="write --section.key VALUE, --section.key=VALUE, --+new_section.key VALUE or --~section.key",
        )
    return op, tuple(int(p) if p.isdigit() else p for p in raw.split("."))


def parse_overrides(args: Sequence[str]) -> list[Override]:
    """Parse command-line tokens into Overrides.

    Accepts ``--a.b VALUE``, ``--a.b=VALUE``, ``--+a.b VALUE`` (may add a new top-level
    section) and ``--~a.b`` (delete). VALUE is parsed as YAML (``1e-4`` float, ``[1,2]``
    list, ``null`` None). Raises ConfigError for anything else.
    """
    overrides: list[Override] = []
    tokens = list(args)
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if not token.startswith("--") or token == "--":
            raise ConfigError(
                f"unexpected argument `{token}`",
                file=SOURCE,
                hint="overrides are written --section.key VALUE or --section.key=VALUE",
            )
        body = token[2:]
        key, has_value, value_text = body.partition("=")
        op, path = _parse_key(key, token)
        if op == "delete":
            if has_value:
                raise ConfigError(f"`{token}`: a delete (~) takes no value", file=SOURCE, hint=f"write --{key}")
            overrides.append(Override(op, path, None, token))
            i += 1
            continue
        if not has_value:
            if i + 1 >= len(tokens) or (tokens[i + 1].startswith("--") and len(tokens[i + 1]) > 2):
                raise ConfigError(
                    f"override `{token}` has no value", file=SOURCE, hint=f"write {token} VALUE or {token}=VALUE"
                )
            value_text = tokens[i + 1]
            i += 1
        i += 1
        try:
            value = parse_yaml_value(value_text)
        except ConfigError as exc:
            raise ConfigError(f"the value of `{token}` is not valid YAML ({exc.message})", file=SOURCE) from None
        overrides.append(Override(op, path, value, f"--{key} {value_text}"))
    return overrides


def _dotted(path: Sequence) -> str:
    return ".".join(str(p) for p in path)


def _child(container: Any, part: Any, override: Override, depth: int, create: bool) -> Any:
    where = _dotted(override.path[:depth]) or "the top level"
    if isinstance(container, list):
        if not isinstance(part, int) or not 0 <= part < len(container):
            raise ConfigError(
                f"override `{override.text}`: `{where}` is a list of {len(container)}, index `{part}` is not in it",
                file=SOURCE,
                hint=f"use an index from 0 to {len(container) - 1}",
            )
        return container[part]
    if not isinstance(container, dict):
        raise ConfigError(
            f"override `{override.text}`: `{where}` is a value ({container!r}), not a section", file=SOURCE
        )
    if part not in container:
        if not create:
            raise ConfigError(
                f"override `{override.text}`: `{_dotted(override.path[: depth + 1])}` does not exist",
                file=SOURCE,
                hint=did_you_mean(str(part), map(str, container)),
            )
        container[part] = {}
    return container[part]


def apply_overrides(data: dict, overrides: Sequence[Override], locations: Locations | None = None) -> dict:
    """Apply overrides to plain config data in place and return it.

    Setting a key inside an existing section is allowed (new keyword arguments);
    creating a new top-level section needs ``+``; deleting needs the key to exist.
    ``locations`` (if given) records each overridden path as coming from the command line.
    """
    for override in overrides:
        path = override.path
        top = path[0]
        if override.op == "set" and top not in data:
            hint = did_you_mean(str(top), map(str, data))
            add = f"add it with --+{_dotted(path)}"
            raise ConfigError(
                f"override `{override.text}`: there is no section `{top}` in the config",
                file=SOURCE,
                hint=f"{hint[:-1]}, or {add}" if hint else add,
            )
        container: Any = data
        for depth, part in enumerate(path[:-1]):
            container = _child(container, part, override, depth, create=override.op != "delete")
        last = path[-1]
        if override.op == "delete":
            _child(container, last, override, len(path) - 1, create=False)
            del container[last]
            continue
        if isinstance(container, list):
            _child(container, last, override, len(path) - 1, create=False)
        elif not isinstance(container, dict):
            _child(container, last, override, len(path) - 1, create=True)
        container[last] = override.value
        if locations is not None:
            for key in [k for k in locations if k[: len(path)] == path]:
                del locations[key]
            locations[path] = (SOURCE, 0)
    return data
