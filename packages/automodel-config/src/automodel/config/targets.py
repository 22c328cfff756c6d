"""Resolving ``_target_`` strings to callables: allowed module prefixes, then the denylist."""

from __future__ import annotations

import importlib
import inspect
import os
import re
from collections.abc import Callable, Iterable
from typing import Any

from automodel.config.denylist import denied_module, names_exactly, refusal
from automodel.config.errors import ConfigError, closest
from automodel.config.redact import reads_hidden_value

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
ALLOW_FLAG = "--allow-target"
DEFAULT_SOURCE = "default"
FLAG_SOURCE = ALLOW_FLAG
ENV_SOURCE = f"${ALLOWLIST_ENV}"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def target_allowances(extra: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Return every allowed prefix or callable with where it came from, first source winning.

    Args:
        extra: allowances given with ``--allow-target`` (module prefixes or exact callables).

    Returns:
        ``(name, source)`` pairs, source being ``default``, ``--allow-target`` or
        ``$AUTOMODEL_TARGET_ALLOWLIST`` (comma-separated names, read now).
    """
    from_env = [p.strip() for p in os.environ.get(ALLOWLIST_ENV, "").split(",") if p.strip()]
    sourced = [
        *((p, DEFAULT_SOURCE) for p in DEFAULT_ALLOWED_PREFIXES),
        *((p.strip(), FLAG_SOURCE) for p in extra if p.strip()),
        *((p, ENV_SOURCE) for p in from_env),
    ]
    first: dict[str, str] = {}
    for name, source in sourced:
        first.setdefault(name, source)
    return list(first.items())


def allowed_prefixes(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Return the default prefixes plus ``extra`` (``--allow-target``) and those in $AUTOMODEL_TARGET_ALLOWLIST."""
    return tuple(name for name, _ in target_allowances(extra))


def is_allowed(target: str, prefixes: Iterable[str]) -> bool:
    """True when ``target`` is one of ``prefixes`` or lies under one (``torch`` allows ``torch.optim.AdamW``)."""
    return any(target == p or target.startswith(p + ".") for p in prefixes)


def how_to_allow(name: str) -> str:
    """Return the hint telling the user how to allow ``name`` (a module or callable) for one run."""
    return (
        f"if you trust it, allow it on the command line with `{ALLOW_FLAG} {name}` "
        f"or in the environment with {ALLOWLIST_ENV}={name}; a config file cannot allow it"
    )


def _import_longest_module(parts: list[str], target: str) -> tuple[Any, int]:
    for end in range(len(parts), 0, -1):
        name = ".".join(parts[:end])
        try:
            return importlib.import_module(name), end
        except TypeError:  # the parent is a module-like object, not a package (torch.classes)
            continue
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
        prefixes: allowed module prefixes or exact callables (default: ``allowed_prefixes()``).

    Raises ConfigError when the name is malformed, private or dunder, outside the allowed
    prefixes, does not import, is not callable, or resolves to a denied callable (a loader of
    untrusted data or a code runner, see ``automodel.config.denylist``) that no entry of
    ``prefixes`` names exactly; the message suggests the closest name or how to allow it.
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
        module = parts[0] if len(parts) < 3 else ".".join(parts[:-1])
        raise ConfigError(
            f"`_target_: {target}` is outside the allowed modules ({', '.join(prefixes)})",
            hint=how_to_allow(target if denied_module(module) else module),
        )
    obj, end = _import_longest_module(parts, target)
    passed = [".".join(parts[:end]), obj.__name__]
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
        if inspect.ismodule(obj):
            if not is_allowed(obj.__name__, prefixes):  # torch.os.system is os.system
                raise ConfigError(
                    f"`_target_: {target}` reaches module `{obj.__name__}` through `{'.'.join(parts[: i + 1])}`, "
                    "which is outside the allowed modules",
                    hint=how_to_allow(obj.__name__ if not denied_module(obj.__name__) else target),
                )
            passed += [".".join(parts[: i + 1]), obj.__name__]
    if not callable(obj):
        raise ConfigError(f"`_target_: {target}` is a {type(obj).__name__}, not something that can be called")
    reason = refusal(obj, target, passed)
    if reason is not None and not any(names_exactly(p, target, obj) for p in prefixes):
        raise ConfigError(
            f"`_target_: {target}`: {reason}",
            hint=f"if you trust this config, allow exactly this callable with `{ALLOW_FLAG} {target}` on the "
            f"command line (or {ALLOWLIST_ENV}={target}); a config file cannot allow it",
        )
    return obj


def import_config_target(target: Any, written: Any, prefixes: Iterable[str] | None = None) -> Callable:
    """``import_target`` for a config's ``_target_``, as read (``target``) and as written in the config (``written``).

    When ``written`` reads the environment or a secret-looking key (``${env:MODEL_CLASS}``), a
    refusal names ``written`` and never the value it read. Returns the callable.
    """
    if not reads_hidden_value(written):
        return import_target(target, prefixes)
    try:
        return import_target(target, prefixes)
    except ConfigError:
        raise ConfigError(
            f"`_target_: {written}` does not name a callable this config may call "
            "(the name it reads is not shown, since it comes from the environment or a secret)",
            hint="write the target out in the config to see what is wrong with it",
        ) from None


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
