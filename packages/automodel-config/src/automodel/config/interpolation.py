"""``${a.b}`` references and ``${env:NAME}`` / ``${env:NAME,default}`` environment reads."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from automodel.config.errors import ConfigError

_REFERENCE = re.compile(r"(\\?)\$\{([^${}]*)\}")


def has_interpolation(value: Any) -> bool:
    """Return True when ``value`` is a string holding a ``${...}``, escaped or not.

    Escaped ones count because reading the value removes their backslash (``\\${x}`` reads as ``${x}``).
    """
    return isinstance(value, str) and _REFERENCE.search(value) is not None


def referenced_keys(value: Any) -> list[str]:
    """Return the last key of every config reference a string holds (``${auth.hf_token}`` -> ``hf_token``)."""
    if not isinstance(value, str):
        return []
    bodies = [m.group(2).strip() for m in _REFERENCE.finditer(value) if not m.group(1)]
    return [body.rsplit(".", 1)[-1] for body in bodies if body and ":" not in body]


def referenced_env_names(value: Any) -> list[str]:
    """Return the environment variable names a string reads with ``${env:...}``."""
    if not isinstance(value, str):
        return []
    names = []
    for match in _REFERENCE.finditer(value):
        body = match.group(2).strip()
        if not match.group(1) and body.startswith("env:"):
            names.append(body[4:].split(",", 1)[0].strip())
    return names


_NULLS = frozenset({"", "~", "null", "Null", "NULL"})


def _decode_scalar(text: str, decode: Callable[[str], Any]) -> Any:
    if "#" in text or "\n" in text:  # YAML would drop a comment or join lines: keep the text as it is
        return text
    try:
        value = decode(text)
    except ConfigError:
        return text
    if value is None:
        return None if text.strip() in _NULLS else text
    return value if isinstance(value, (int, float, bool)) else text


def _read_env(body: str, where: str, environ: Mapping[str, str]) -> tuple[str, bool]:
    name, has_default, default = body.partition(",")
    name = name.strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
        raise ConfigError(f"`${{env:{name}}}` does not name an environment variable", path=where)
    if name in environ:
        return environ[name], True
    if has_default:
        return default.strip(), True
    raise ConfigError(
        f"environment variable {name} is not set",
        path=where,
        hint=f"export {name}=... before the run, or give a default: ${{env:{name},<default>}}",
    )


def interpolate(
    text: str,
    where: str,
    lookup: Callable[[str], Any],
    decode: Callable[[str], Any],
    environ: Mapping[str, str] | None = None,
) -> Any:
    """Resolve every ``${...}`` in ``text``.

    Args:
        text: the raw string from the config.
        where: dotted path of the key holding it, for error messages.
        lookup: resolves a dotted reference (``model.name``) to its value.
        decode: parses a scalar the way the config's YAML does (for env values).
        environ: the environment (default ``os.environ``).

    Returns the referenced value itself (any type) when ``text`` is exactly one reference;
    otherwise the string with every reference replaced by its text. ``\\${`` stays literal.
    """
    environ = os.environ if environ is None else environ
    matches = list(_REFERENCE.finditer(text))
    whole = len(matches) == 1 and matches[0].span() == (0, len(text)) and not matches[0].group(1)

    def value_of(body: str) -> Any:
        body = body.strip()
        if ":" in body:
            resolver, _, argument = body.partition(":")
            if resolver.strip() != "env":
                raise ConfigError(
                    f"unknown resolver `{resolver}` in `${{{body}}}`",
                    path=where,
                    hint="only ${env:NAME} and ${env:NAME,default} and ${section.key} are supported",
                )
            env_text, _ = _read_env(argument, where, environ)
            return _decode_scalar(env_text, decode) if whole else env_text
        if not body:
            raise ConfigError("empty reference `${}`", path=where, hint="write ${section.key}")
        return lookup(body)

    if whole:
        return value_of(matches[0].group(2))

    def replace(match: re.Match) -> str:
        if match.group(1):
            return match.group(0)[1:]
        value = value_of(match.group(2))
        if isinstance(value, (Mapping, list, tuple)) or hasattr(value, "to_container"):
            raise ConfigError(
                f"`${{{match.group(2)}}}` is a section and cannot be embedded in text",
                path=where,
                hint="reference a single value, or use the reference as the whole value",
            )
        return "null" if value is None else str(value).lower() if isinstance(value, bool) else str(value)

    return _REFERENCE.sub(replace, text)
