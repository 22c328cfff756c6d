"""A route's config for its ``--help``: every section and key its strict schema allows, and what each holds.

A route's module (the one its entry point names) may set ``SCHEMA``, the mapping it gives
``automodel.config.check_config``, and ``REQUIRED``, the sections it cannot run without. The
module is imported only when a route's help is asked for, never for ``automodel --help``.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Collection, Mapping
from typing import Any

from automodel.cli.routes import Route
from automodel.config import BUILT, NO_DEFAULT, OWNED, ConfigError, Setting, parse_yaml_text

KIND_WORDS = {"int": "int", "float": "number", "bool": "bool", "str": "str", "list": "list", "mapping": "mapping"}


def yaml_text(value: Any) -> str:
    """Return ``value`` as a config writes it on one line: ``null``, ``true``, ``0.5``, ``5GB``, ``[1, 10, 100]``.

    A string is quoted only where YAML would read it as something else (``"true"``, ``"1"``, ``""``).
    """
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(yaml_text, value)) + "]"
    if isinstance(value, str) and _reads_back(value):
        return value
    return json.dumps(value, default=str)


def _reads_back(value: str) -> bool:
    """Whether ``value`` written unquoted reads back as the same string."""
    try:
        return bool(value) and parse_yaml_text(value)[0] == value
    except ConfigError:
        return False


def setting_text(setting: Setting) -> str:
    """Return what a plain key holds in a few words, and its default when known.

    ``int >= 0``, ``one of: mean, sample``, ``bool; default true``, ``int >= 0; data-loading processes; default 0``.
    """
    if setting.choices:
        words = "one of: " + ", ".join(map(str, setting.choices))
    elif set(setting.kinds) >= set(KIND_WORDS):
        words = "any value"
    else:
        words = " or ".join(KIND_WORDS[kind] for kind in setting.kinds)
        if setting.minimum is not None:
            words += f" >= {setting.minimum:g}"
    if not setting.nullable:
        words += " (not null)"
    if setting.describe:
        words += f"; {setting.describe}"
    if setting.default is not NO_DEFAULT:
        words += f"; default {yaml_text(setting.default)}"
    return words


def schema_rows(schema: Mapping[str, Any], required: Collection[str] = (), prefix: str = "") -> list[tuple[str, str]]:
    """Return ``(key, what it holds)`` for every entry of a recipe schema, a plain section's keys as ``section.key``.

    The keys are written as overrides name them (``--dataloader.num_workers 2``); a ``_target_``
    section, a section its component checks and each required top-level section say so.
    """
    rows = []
    for key, spec in schema.items():
        path = f"{prefix}{key}"
        needed = "required; " if not prefix and key in required else ""
        if spec == BUILT:
            rows.append((path, f"{needed}a _target_ section"))
        elif spec == OWNED:
            rows.append((path, f"{needed}a section checked by its component"))
        elif isinstance(spec, Setting):
            rows.append((path, needed + setting_text(spec)))
        else:
            rows.append((path, f"{needed}a section of the {path}.* keys below"))
            rows.extend(schema_rows(spec, prefix=f"{path}."))
    return rows


def route_config_help(route: Route) -> tuple[str, list[tuple[str, str]]]:
    """Return a heading and the rows of ``route``'s config, imported from the route's module.

    A module that cannot be imported, or sets no ``SCHEMA``, gives a heading saying so and no rows.
    """
    try:
        module = importlib.import_module(route.module)
    except Exception as exc:  # the help still shows the options; the run reports the same failure as an error
        return f"Config: {route.module} cannot be imported ({type(exc).__name__}: {exc})", []
    schema = getattr(module, "SCHEMA", None)
    if not isinstance(schema, Mapping):
        return f"Config: {route.module} declares no SCHEMA; see the documentation of {route.package}", []
    required = tuple(getattr(module, "REQUIRED", ()))
    heading = f"Config of {route.command} {route.domain} (-c cfg.yaml; override a key with --KEY VALUE)"
    return heading, schema_rows(schema, required)
