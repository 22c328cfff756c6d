"""Resolving ``_target_`` strings to callables, restricted to allowed module prefixes."""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from automodel.config.errors import ConfigError, closest

DEFAULT_ALLOWED_PREFIXES: tuple[str, ...] = (
    "automodel",
    "torch",
    "transformers",
    "datasets",
    "peft",
    "diffusers",
    "sentence_transformers",
    "torchdata",
    "safetensors",
)
ALLOWLIST_KEY = "target_allowlist"
ALLOWLIST_ENV = "AUTOMODEL_TARGET_ALLOWLIST"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def allowed_prefixes(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Return the default prefixes plus ``extra`` and those in $AUTOMODEL_TARGET_ALLOWLIST (comma-separated)."""
    from_env = [p.strip() for p in os.environ.get(ALLOWLIST_ENV, "").split(",") if p.strip()]
    return tuple(dict.fromkeys([*DEFAULT_ALLOWED_PREFIXES, *extra, *from_env]))


def is_allowed(target: str, prefixes: Iterable[str]) -> bool:
    """True when ``target`` is one of ``prefixes`` or lies under one (``torch`` allows ``torch.optim.AdamW``)."""
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def _how_to_allow(module: str) -> str:
    return (
        f"if you trust it, allow the module with a top-level `{ALLOWLIST_KEY}: [{module}]` in the config "
        f"or {ALLOWLIST_ENV}={module} in the environment"
    )


def _import_longest_module(parts: list[str], target: str) -> tuple[Any, int]:
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        try:
            return importlib.import_module(name), end
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if missing == name or name.startswith(missing + "."):
                continue
            raise ConfigError(
                f"importing `{name}` for `_target_: {target}` failed: no module named `{missing}`",
                hint=f"install the package that provides `{missing}`",
            ) from None
    raise ConfigError(f"`_target_: {target}`: no module named `{parts[0]}`", hint="check the spelling or install it")


def import_target(target: Any, prefixes: Iterable[str] | None = None) -> Callable:
    """Import the callable a ``_target_`` names and return it.

    Args:
        target: a fully qualified name (``torch.optim.AdamW``,
            ``automodel.models.AutoModelForCausalLM.from_pretrained``).
        prefixes: allowed module prefixes (default: ``allowed_prefixes()``).

    Raises ConfigError when the name is malformed, private or dunder, outside the allowed
    prefixes, does not import, or is not callable; the message suggests the closest name.
    """
    if not isinstance(target, str) or not target:
        raise ConfigError(f"`_target_` must be a dotted name like torch.optim.AdamW, got {target!r}")
    parts = target.split(".")
    if not all(_IDENTIFIER.match(p) for p in parts):
        raise ConfigError(f"`_target_: {target}` is not a dotted Python name")
    if any(p.startswith("_") for p in parts):
        raise ConfigError(
            f"`_target_: {target}` names a private or dunder attribute, which configs may not call",
            hint="call a public function or class instead",
        )
    prefixes = allowed_prefixes() if prefixes is None else tuple(prefixes)
    if not is_allowed(target, prefixes):
        raise ConfigError(
            f"`_target_: {target}` is outside the allowed modules ({', '.join(prefixes)})",
            hint=_how_to_allow(parts[0] if len(parts) < 3 else ".".join(parts[:-1])),
        )
    obj, end = _import_longest_module(parts, target)
    for i in range(end, len(parts)):
        if not hasattr(obj, parts[i]):
            owner = ".".join(parts[:i])
            public = [n for n in dir(obj) if not n.startswith("_")]
            match = closest(parts[i], public)
            raise ConfigError(
                f"`_target_: {target}`: `{owner}` has no attribute `{parts[i]}`",
                hint=f"did you mean `{owner}.{match}`?" if match else "check the spelling",
            )
        obj = getattr(obj, parts[i])
        if inspect.ismodule(obj) and not is_allowed(obj.__name__, prefixes):  # torch.os.system is os.system
            raise ConfigError(
                f"`_target_: {target}` reaches module `{obj.__name__}` through `{'.'.join(parts[: i + 1])}`, "
                "which is outside the allowed modules",
                hint=_how_to_allow(obj.__name__),
            )
    if not callable(obj):
        raise ConfigError(f"`_target_: {target}` is a {type(obj).__name__}, not something that can be called")
    return obj


def signature_of(fn: Callable) -> inspect.Signature | None:
    """Return the call signature of ``fn`` (a class's ``__init__`` for classes), or None if unknown."""
    try:
        return inspect.signature(fn)
    except (TypeError, ValueError):
        return None


def keyword_problem(fn: Callable, keywords: Iterable[str]) -> tuple[str, str | None] | None:
    """Return (bad keyword, suggestion) for the first keyword ``fn`` does not accept, else None."""
    sig = signature_of(fn)
    if sig is None:
        return None
    params = sig.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for keyword in keywords:
        if keyword not in accepted:
            return keyword, closest(keyword, accepted)
    return None
