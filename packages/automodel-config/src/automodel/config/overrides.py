"""Command-line overrides: ``--a.b VALUE``, ``--a.b=VALUE``, ``--+new.key VALUE``, ``--~a.b``."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from automodel.config.errors import ConfigError, did_you_mean
from automodel.config.redact import REDACTED, is_secret_key, redact_secrets, shown_value
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


def _parse_key(written: str) -> tuple[str, tuple]:
    op, raw = "set", written
    if raw.startswith(("+", "~")):
        op = "add" if raw[0] == "+" else "delete"
        raw = raw[1:]
    if not _KEY.match(raw):
        raise ConfigError(
            f"override `--{written}` has a malformed key `{raw}`",
            file=SOURCE,
            hint="write --section.key VALUE, --section.key=VALUE, --+new_section.key VALUE or --~section.key",
        )
    return op, tuple(int(p) if p.isdigit() else p for p in raw.split("."))


def _tokens(args: Sequence[str]) -> Iterator[tuple[str, int | None, bool]]:
    """Yield (key as written after ``--``, index of the value's token or None, whether the value follows ``=``)."""
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
        key, has_value, _ = token[2:].partition("=")
        if has_value:
            yield key, i, True
        elif key.startswith("~"):
            yield key, None, False
        elif i + 1 >= len(tokens) or (tokens[i + 1].startswith("--") and len(tokens[i + 1]) > 2):
            hint = f"write {token} VALUE or {token}=VALUE"
            raise ConfigError(f"override `{token}` has no value", file=SOURCE, hint=hint)
        else:
            i += 1
            yield key, i, False
        i += 1


def _is_secret(path: tuple, value: Any) -> bool:
    return any(is_secret_key(p) for p in path) or redact_secrets(value) != value


def parse_overrides(args: Sequence[str]) -> list[Override]:
    """Parse command-line tokens into Overrides.

    Accepts ``--a.b VALUE``, ``--a.b=VALUE``, ``--+a.b VALUE`` (may add a new top-level
    section) and ``--~a.b`` (delete). VALUE is parsed as YAML (``1e-4`` float, ``[1,2]``
    list, ``null`` None). Raises ConfigError for anything else; no message shows the value
    of a secret key (``--hub.hf_token``).
    """
    tokens = list(args)
    overrides: list[Override] = []
    for key, index, after_equals in _tokens(tokens):
        op, path = _parse_key(key)
        if op == "delete":
            if index is not None:
                token = tokens[index]
                raise ConfigError(f"`{token}`: a delete (~) takes no value", file=SOURCE, hint=f"write --{key}")
            overrides.append(Override(op, path, None, f"--{key}"))
            continue
        value_text = tokens[index].partition("=")[2] if after_equals else tokens[index]
        try:
            value = parse_yaml_value(value_text)
        except ConfigError as exc:
            raise ConfigError(f"the value of `--{key}` is not valid YAML ({exc.message})", file=SOURCE) from None
        shown = REDACTED if _is_secret(path, value) else value_text
        overrides.append(Override(op, path, value, f"--{key} {shown}"))
    return overrides


def redact_override_args(args: Sequence[str]) -> list[str]:
    """Return override tokens with the value of every secret key replaced by ``<redacted>``, for printing.

    A value is secret when a key on its path looks secret (``--model.hf_token abc``) or it is a
    section holding one (``--+hub '{token: abc}'``). When the tokens do not parse as overrides,
    every value is replaced.
    """
    tokens = list(args)
    try:
        for key, index, after_equals in _tokens(tokens):
            if index is None:
                continue
            text = tokens[index].partition("=")[2] if after_equals else tokens[index]
            if _is_secret(_parse_key(key)[1], parse_yaml_value(text)):
                tokens[index] = f"--{key}={REDACTED}" if after_equals else REDACTED
    except ConfigError:
        return [_without_value(t) for t in args]
    return tokens


def _without_value(token: str) -> str:
    if not token.startswith("--"):
        return REDACTED
    key, has_value, _ = token.partition("=")
    return f"{key}={REDACTED}" if has_value else token


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
            f"override `{override.text}`: `{where}` is a value ({shown_value(override.path[:depth], container)}), "
            "not a section",
            file=SOURCE,
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
