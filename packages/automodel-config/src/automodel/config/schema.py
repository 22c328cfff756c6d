"""A recipe's whole config in one strict schema: which sections it takes, and what each plain key may hold.

A schema maps each top-level key to what it is:

- ``BUILT``: a ``_target_`` section, built by ``build_section`` (its keywords are checked
  against the callable by ``validate``);
- ``OWNED``: a section read and checked by the component that owns it (``distributed:``,
  ``compile:``, launcher sections);
- a ``Setting``: one plain value (``seed: 42``);
- a mapping of key to ``Setting`` or nested mapping: a plain section (``dataloader:``).

``check_config`` checks all of it before anything is built, so a misspelt key, a string
where a number belongs or a negative batch size stops the run at once, naming the key, its
file and line and the closest known key.
"""

from __future__ import annotations

import enum
import inspect
import math
import os
import types
import typing
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import MISSING, dataclass, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Union

from automodel.config.errors import did_you_mean
from automodel.config.node import ConfigList, ConfigNode, config_error
from automodel.config.sections import check_sections

BUILT = "a `_target_` section"
OWNED = "a section its component checks"


class _NoDefault(enum.Enum):
    """The type of ``NO_DEFAULT``: one member, so it survives copies and pickling as itself."""

    NO_DEFAULT = "no default"


NO_DEFAULT = _NoDefault.NO_DEFAULT
"""A ``Setting``'s ``default`` when the value used without the key is not known (``None`` is a default: null)."""


@dataclass(frozen=True)
class Setting:
    """What one plain key may hold.

    Attributes:
        kinds: the accepted value kinds, any of ``"int"`` (a whole number, not a boolean),
            ``"float"`` (a finite number, whole or not), ``"bool"``, ``"str"``, ``"list"``, ``"mapping"``.
        minimum: the least accepted number, for ``int`` and ``float``.
        choices: the accepted values, when only a few are.
        nullable: whether ``null`` is accepted (meaning "the default").
        describe: what the value is, for messages (``"the number of data-loading processes"``).
        default: the value used when the key is absent, for help; ``NO_DEFAULT`` when not known.
    """

    kinds: tuple[str, ...]
    minimum: float | None = None
    choices: tuple[Any, ...] | None = None
    nullable: bool = True
    describe: str = ""
    default: Any = NO_DEFAULT


def integer(
    minimum: int | None = None, describe: str = "", nullable: bool = True, default: Any = NO_DEFAULT
) -> Setting:
    """A whole number of at least ``minimum``, used as ``default`` when absent."""
    return Setting(("int",), minimum=minimum, nullable=nullable, describe=describe, default=default)


def number(
    minimum: float | None = None, describe: str = "", nullable: bool = True, default: Any = NO_DEFAULT
) -> Setting:
    """A finite number (whole or not) of at least ``minimum``, used as ``default`` when absent."""
    return Setting(("float",), minimum=minimum, nullable=nullable, describe=describe, default=default)


def boolean(describe: str = "", default: Any = NO_DEFAULT) -> Setting:
    """``true`` or ``false``, used as ``default`` when absent."""
    return Setting(("bool",), describe=describe, default=default)


def text(
    choices: Collection[str] | None = None, describe: str = "", nullable: bool = True, default: Any = NO_DEFAULT
) -> Setting:
    """A string, one of ``choices`` when given, used as ``default`` when absent."""
    return Setting(
        ("str",), choices=tuple(choices) if choices else None, nullable=nullable, describe=describe, default=default
    )


def anything(describe: str = "", default: Any = NO_DEFAULT) -> Setting:
    """Any value, checked where it is used; ``default`` when absent."""
    return Setting(("int", "float", "bool", "str", "list", "mapping"), describe=describe, default=default)


SectionSpec = str | Setting | Mapping[str, Any]
_KIND_OF_TYPE = {int: "int", float: "float", bool: "bool", str: "str", Path: "str", os.PathLike: "str"}


def _kinds_of_annotation(annotation: Any) -> tuple[tuple[str, ...], bool]:
    """Return (kinds, nullable) for a type annotation; ``((), True)`` when it says nothing checkable."""
    if annotation in _KIND_OF_TYPE:
        return (_KIND_OF_TYPE[annotation],), False
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        kinds: list[str] = []
        nullable = False
        for member in typing.get_args(annotation):
            if member is type(None):
                nullable = True
                continue
            member_kinds, _ = _kinds_of_annotation(member)
            if not member_kinds:
                return (), True
            kinds.extend(member_kinds)
        return tuple(dict.fromkeys(kinds)), nullable
    if origin in (list, tuple, Sequence) or annotation in (list, tuple):
        return ("list",), False
    if origin in (dict, Mapping) or annotation in (dict,):
        return ("mapping",), False
    return (), True


def signature_settings(
    fn: Callable, skip: Collection[str] = (), minimums: Mapping[str, float] | None = None, **overrides: Setting
) -> dict[str, Setting]:
    """Return ``{keyword: Setting}`` for the keyword arguments of ``fn`` (a function, class or dataclass).

    The kinds come from the type annotations (``int | None`` is a nullable whole number, ``str |
    int`` either, ``Path`` a string); an unannotated or ``Any`` keyword accepts anything. Each
    ``default`` is the keyword's default (none for a required keyword or a dataclass field's
    ``default_factory``). A component keeps its own range checks (a batch size of 0 is its error);
    the schema catches misspelt keys and values of the wrong kind before anything is built.

    Args:
        fn: what the section's keys are passed to (``StepScheduler``, ``CheckpointSettings``).
        skip: keywords the recipe passes itself (``dataloader``, ``dp_size``).
        minimums: the least value of numeric keywords, as the component declares them
            (``StepScheduler.MINIMUMS``), so a config breaking them stops before anything is built.
        **overrides: a stricter ``Setting`` for some keywords (``seed=integer(0)``); one without a
            default of its own takes the keyword's.

    Returns:
        ``{keyword: Setting}`` in the signature's order.
    """
    hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    factories = {f.name for f in fields(fn) if f.default_factory is not MISSING} if is_dataclass(fn) else set()
    settings: dict[str, Setting] = {}
    for name, parameter in inspect.signature(fn).parameters.items():
        if name in skip or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = NO_DEFAULT if parameter.default is parameter.empty or name in factories else parameter.default
        override = overrides.get(name)
        if override is not None:
            settings[name] = override if override.default is not NO_DEFAULT else replace(override, default=default)
            continue
        kinds, nullable = _kinds_of_annotation(hints.get(name, Any))
        least = (minimums or {}).get(name)
        settings[name] = (
            Setting(kinds, minimum=least, nullable=nullable, default=default) if kinds else anything(default=default)
        )
    return settings


def check_config(
    cfg: ConfigNode,
    schema: Mapping[str, SectionSpec],
    required: Collection[str],
    recipe: str,
    examples: str,
) -> None:
    """Check a recipe's whole config against its schema before anything is built.

    Args:
        cfg: the whole config.
        schema: ``{top-level key: BUILT | OWNED | Setting | {key: Setting or nested mapping}}``.
        required: the keys the recipe cannot run without.
        recipe: the recipe's name, for the messages (``train_ft``).
        examples: where its example configs are, for the messages (``examples/llm_finetune``).

    Raises:
        ConfigError: at the offending key's file and line: a key the schema does not know
            (naming the closest), a missing required section, a ``_target_`` section that is
            not a mapping with ``_target_``, or a plain value of the wrong kind, out of range or
            not among its choices.
    """
    check_sections(cfg, schema, required, recipe, examples)
    for key, spec in schema.items():
        if key in cfg:
            _check_entry(cfg, key, spec)


def _check_entry(parent: ConfigNode, key: str, spec: SectionSpec) -> None:
    value = parent[key]
    if spec == OWNED:
        return
    if spec == BUILT:
        if value is not None and not (isinstance(value, ConfigNode) and "_target_" in value):
            raise config_error(
                parent,
                "must be a section with a `_target_` naming what to build",
                key,
                "see the recipe's example configs",
            )
        return
    if isinstance(spec, Setting):
        _check_value(parent, key, value, spec)
        return
    if value is None:
        return
    if not isinstance(value, ConfigNode):
        raise config_error(parent, f"must be a mapping of {', '.join(spec)}", key)
    for child in value:
        if child not in spec:
            raise config_error(value, f"is not a {key} setting", child, did_you_mean(str(child), spec))
    for child, child_spec in spec.items():
        if child in value:
            _check_entry(value, child, child_spec)


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, ConfigList)):
        return "list"
    return "mapping"


_KIND_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "list": "a list",
    "mapping": "a mapping",
}


def _expected(spec: Setting) -> str:
    words = " or ".join(_KIND_WORDS[k] for k in spec.kinds)
    if spec.minimum is not None:
        words += f" of at least {spec.minimum:g}"
    if spec.choices:
        words = "one of " + ", ".join(map(str, spec.choices))
    if spec.describe:
        words += f" ({spec.describe})"
    return words


def _check_value(parent: ConfigNode, key: str, value: Any, spec: Setting) -> None:
    if value is None:
        if not spec.nullable:
            raise config_error(parent, f"must be {_expected(spec)}, not null", key)
        return
    kind = _kind_of(value)
    accepted = kind in spec.kinds or (kind == "int" and "float" in spec.kinds)
    if not accepted:
        raise config_error(parent, f"must be {_expected(spec)}, not {_KIND_WORDS[kind]}", key)
    if kind in ("int", "float") and not math.isfinite(value):
        raise config_error(parent, f"must be {_expected(spec)}, not {value}", key)
    if spec.minimum is not None and kind in ("int", "float") and value < spec.minimum:
        raise config_error(parent, f"must be {_expected(spec)}, not {value}", key)
    if spec.choices and value not in spec.choices:
        raise config_error(
            parent, f"must be {_expected(spec)}", key, did_you_mean(str(value), [str(c) for c in spec.choices])
        )
