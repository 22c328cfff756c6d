"""Callables no config may call, even under an allowed prefix: loaders of untrusted data and code runners.

A resolved ``_target_`` is refused when it *is* one of ``DENIED_CALLABLES`` (compared by
identity, so an alias such as ``transformers.modeling_utils.torch.load`` is caught), when the
module and qualified name it was defined under (``torch.serialization.load``) is one of them,
or when it was defined in, or reached through, one of ``DENIED_MODULES``. Only an allowance
naming that exact callable lifts a refusal (``--allow-target torch.load``); a module prefix
(``--allow-target torch``) never does.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

_PICKLE = "runs pickled code from a file", "loaders of untrusted data"
_HUB = "downloads and runs code or pickled data from the internet", "loaders of untrusted data"
_NATIVE = "compiles or loads native code", "code loaders"
_REMOTE = "imports Python code from a model folder", "code loaders"
_COMMAND = "runs commands or changes the system", "commands or the operating system"
_CODE = "imports or runs arbitrary Python code", "code runners"
_FILE = "opens any file for reading or writing", "raw file access"

DENIED_CALLABLES: dict[str, tuple[str, str]] = {
    "torch.load": _PICKLE,
    "torch.serialization.load": _PICKLE,
    "torch.jit.load": _PICKLE,
    "torch.export.load": _PICKLE,
    "torch.hub.load": _HUB,
    "torch.hub.load_state_dict_from_url": _HUB,
    "torch.ops.load_library": _NATIVE,
    "torch._ops._Ops.load_library": _NATIVE,
    "torch.classes.load_library": _NATIVE,
    "torch._classes._Classes.load_library": _NATIVE,
    "numpy.load": _PICKLE,
    "numpy.lib.format.read_array": _PICKLE,
    "joblib.load": _PICKLE,
    "pandas.read_pickle": _PICKLE,
    "builtins.eval": _CODE,
    "builtins.exec": _CODE,
    "builtins.compile": _CODE,
    "builtins.__import__": _CODE,
    "builtins.getattr": _CODE,
    "builtins.setattr": _CODE,
    "builtins.delattr": _CODE,
    "builtins.globals": _CODE,
    "builtins.locals": _CODE,
    "builtins.vars": _CODE,
    "builtins.breakpoint": _CODE,
    "builtins.open": _FILE,
    "io.open": _FILE,
}
DENIED_MODULES: dict[str, tuple[str, str]] = {
    "pickle": _PICKLE,
    "_pickle": _PICKLE,
    "dill": _PICKLE,
    "cloudpickle": _PICKLE,
    "marshal": _PICKLE,
    "shelve": _PICKLE,
    "joblib.numpy_pickle": _PICKLE,
    "pandas.io.pickle": _PICKLE,
    "torch.serialization": _PICKLE,
    "torch.jit._serialization": _PICKLE,
    "torch.package": _PICKLE,
    "torch.distributed.checkpoint": _PICKLE,
    "torch.hub": _HUB,
    "torch.utils.cpp_extension": _NATIVE,
    "ctypes": _NATIVE,
    "_ctypes": _NATIVE,
    "transformers.dynamic_module_utils": _REMOTE,
    "os": _COMMAND,
    "posix": _COMMAND,
    "nt": _COMMAND,
    "subprocess": _COMMAND,
    "_posixsubprocess": _COMMAND,
    "pty": _COMMAND,
    "importlib": _CODE,
    "runpy": _CODE,
    "code": _CODE,
    "codeop": _CODE,
}


def _attribute(obj: Any, name: str) -> Any:
    try:
        return getattr(obj, name, None)
    except Exception:  # module-like objects (torch.classes) raise their own errors for unknown names
        return None


def _unbound(obj: Any) -> Any:
    function = _attribute(obj, "__func__")
    return obj if function is None else function


def defined_as(obj: Any) -> str | None:
    """Return ``module.qualname`` where ``obj`` (or a bound method's function) was defined, or None if unknown."""
    fn = _unbound(obj)
    module = _attribute(fn, "__module__")
    name = _attribute(fn, "__qualname__") or _attribute(fn, "__name__")
    return f"{module}.{name}" if isinstance(module, str) and isinstance(name, str) else None


def loaded_object(name: str) -> Any:
    """Return the object a dotted ``name`` refers to among modules already imported, or None; imports nothing."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        obj = sys.modules.get(".".join(parts[:end]))
        if obj is None:
            continue
        for part in parts[end:]:
            obj = _attribute(obj, part)
            if obj is None:
                return None
        return obj
    return None


def denied_module(module: str) -> str | None:
    """Return the entry of ``DENIED_MODULES`` that ``module`` is or lies under, or None."""
    return next((p for p in DENIED_MODULES if module == p or module.startswith(p + ".")), None)


def refusal(obj: Any, target: str, modules: Iterable[str]) -> str | None:
    """Say why a resolved ``_target_`` may not be called, or return None when it may.

    Args:
        obj: the callable the target resolved to.
        target: the target as written (``torch.load``), for the message.
        modules: the modules the target's name went through (``torch.hub`` for ``torch.hub.load``).

    Returns:
        A sentence such as ``torch.load runs pickled code from a file; configs may not call
        loaders of untrusted data``, or None.
    """
    for name, (what, kind) in DENIED_CALLABLES.items():
        denied = loaded_object(name)
        if denied is not None and _unbound(denied) is _unbound(obj):
            return f"{name} {what}; configs may not call {kind}"
    canonical = defined_as(obj)
    if canonical in DENIED_CALLABLES:
        what, kind = DENIED_CALLABLES[canonical]
        return f"{canonical} {what}; configs may not call {kind}"
    home = _attribute(_unbound(obj), "__module__")
    prefix = denied_module(home) if isinstance(home, str) else None
    if prefix is not None:
        what, kind = DENIED_MODULES[prefix]
        return f"{canonical or target} belongs to `{prefix}`, which {what}; configs may not call {kind}"
    for module in modules:
        prefix = denied_module(module)
        if prefix is not None:
            what, kind = DENIED_MODULES[prefix]
            return f"{target} goes through `{prefix}`, which {what}; configs may not call {kind}"
    return None


def names_exactly(allowance: str, target: str, obj: Any) -> bool:
    """True when ``allowance`` names the callable ``obj`` itself.

    That is the target as written, where the callable was defined, or a name for the same object.
    """
    if allowance in (target, defined_as(obj)):
        return True
    named = loaded_object(allowance)
    return named is not None and _unbound(named) is _unbound(obj)
