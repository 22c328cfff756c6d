"""ConfigNode: a live, attribute-accessible view of a loaded config with lazy references."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from automodel.config.errors import ConfigError, ConfigIndexError, ConfigKeyError, did_you_mean
from automodel.config.interpolation import has_interpolation, interpolate
from automodel.config.redact import redact_secrets, shown_value
from automodel.config.yaml_io import Locations, dump_yaml, parse_yaml_value

_MISSING = object()


class _Root:
    """What every view of one config shares: the raw data, source lines, resolution stack and the loader's allowances.

    ``allow_targets`` holds the ``--allow-target`` names the config was loaded with (never
    anything the config itself says).
    """

    def __init__(self, data: dict, locations: Locations | None = None, file: str | None = None) -> None:
        self.data = data
        self.locations: Locations = dict(locations or {})
        self.file = file
        self.resolving: list[str] = []
        self.allow_targets: tuple[str, ...] = ()


def dotted(path: Sequence) -> str:
    """Join a key path tuple into ``a.b.0.c``."""
    return ".".join(str(p) for p in path)


def split_path(text: str) -> tuple:
    """Split ``a.b.0.c`` into ``("a", "b", 0, "c")`` (digit segments become list indices)."""
    return tuple(int(p) if p.isdigit() else p for p in text.split("."))


class _View:
    __slots__ = ("_path", "_root")

    def __init__(self, root: _Root, path: tuple) -> None:
        object.__setattr__(self, "_root", root)
        object.__setattr__(self, "_path", path)

    def _raw(self) -> Any:
        """The underlying plain data, with ``${...}`` left unresolved (live, not a copy)."""
        node: Any = self._root.data
        for part in self._path:
            node = node[part]
        return node

    def _error(self, message: str, key: Any = None, hint: str | None = None, cls: type = ConfigError) -> ConfigError:
        path = self._path if key is None else (*self._path, key)
        file, line = self._root.locations.get(path, (self._root.file, None))
        return cls(message, path=dotted(path) or None, file=file, line=line, hint=hint)

    def _wrap(self, value: Any, path: tuple) -> Any:
        if isinstance(value, dict):
            return ConfigNode(self._root, path)
        if isinstance(value, list):
            return ConfigList(self._root, path)
        if has_interpolation(value):
            return _resolve_string(self._root, value, path)
        return value

    def to_container(self, resolve: bool = True) -> Any:
        """Return plain dicts/lists; with ``resolve`` every ``${...}`` is replaced by its value."""
        if not resolve:
            return copy.deepcopy(self._raw())
        return _resolved_copy(self._root, self._raw(), self._path)

    def to_yaml(self, resolve: bool = True, redact: bool = True) -> str:
        """Return the config as YAML; secrets are redacted unless ``redact=False``.

        With ``resolve`` a literal ``${`` in a resolved value is written escaped (``\\${``),
        so reloading the YAML reads the same values instead of new references.
        """
        data = self.to_container(resolve=resolve)
        if resolve:
            data = _escape_references(data)
        if redact:
            data = redact_secrets(data, self._raw())
        return dump_yaml(data)


class ConfigNode(_View, Mapping):
    """A mapping section of a config.

    ``cfg.optimizer.lr`` and ``cfg["optimizer"]["lr"]`` read values, resolving
    ``${...}`` references when read (so overrides applied later are seen). Sub-sections
    are ConfigNode / ConfigList views of the same data: writing through them changes the
    config. A missing key raises ConfigKeyError (a KeyError and AttributeError) naming
    the YAML path and the closest existing key.
    """

    __slots__ = ()

    def __getitem__(self, key: Any) -> Any:
        data = self._raw()
        if key not in data:
            raise self._error(
                "no such key in the config", key, did_you_mean(str(key), [str(k) for k in data]), ConfigKeyError
            )
        return self._wrap(data[key], (*self._path, key))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self[name]

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __setitem__(self, key: Any, value: Any) -> None:
        self._raw()[key] = _unwrap(value)

    def __delitem__(self, key: Any) -> None:
        data = self._raw()
        if key not in data:
            raise self._error(
                "no such key in the config", key, did_you_mean(str(key), list(map(str, data))), ConfigKeyError
            )
        del data[key]

    def __iter__(self) -> Iterator:
        return iter(list(self._raw()))

    def __len__(self) -> int:
        return len(self._raw())

    def __contains__(self, key: object) -> bool:
        return key in self._raw()

    def __repr__(self) -> str:
        return f"ConfigNode({dotted(self._path) or '<root>'}: {self._raw()!r})"

    def get(self, key: Any, default: Any = None) -> Any:
        """Return the value at ``key`` (resolved), or ``default`` when absent."""
        return self[key] if key in self._raw() else default

    def pop(self, key: Any, default: Any = _MISSING) -> Any:
        """Remove ``key`` and return its resolved value (a plain container for sections)."""
        if key not in self._raw():
            if default is _MISSING:
                raise self._error("no such key in the config", key, None, ConfigKeyError)
            return default
        value = self[key]
        value = value.to_container() if isinstance(value, _View) else value
        del self._raw()[key]
        return value

    def select(self, path: str, default: Any = _MISSING) -> Any:
        """Return the value at a dotted ``path`` below this section, or ``default`` when absent."""
        parts = split_path(path)
        node: Any = self
        parent: _View = self
        for i, part in enumerate(parts):
            if not isinstance(node, _View):
                if default is not _MISSING:
                    return default
                where = (*self._path, *parts[:i])
                file, line = self._root.locations.get(where, (self._root.file, None))
                shown = shown_value(where, parent._raw()[parts[i - 1]])
                raise ConfigKeyError(
                    f"is a value ({shown}), not a section, so `{path}` cannot go inside it",
                    path=dotted(where),
                    file=file,
                    line=line,
                )
            try:
                parent, node = node, node[part]
            except (KeyError, IndexError, TypeError):
                if default is _MISSING:
                    raise
                return default
        return node

    def instantiate(self, **kwargs: Any) -> Any:
        """Build this section's ``_target_`` with runtime ``kwargs`` (see ``automodel.config.instantiate``)."""
        from automodel.config.instantiate import instantiate

        return instantiate(self, **kwargs)


class ConfigList(_View, Sequence):
    """A list in a config: indexable, iterable, each item resolved when read."""

    __slots__ = ()

    def __getitem__(self, index: Any) -> Any:
        data = self._raw()
        if isinstance(index, slice):
            return [self[i] for i in range(len(data))[index]]
        if not isinstance(index, int) or not -len(data) <= index < len(data):
            raise self._error(f"index {index} is out of range for a list of {len(data)}", cls=ConfigIndexError)
        index %= len(data)
        return self._wrap(data[index], (*self._path, index))

    def __iter__(self) -> Iterator:
        return (self[i] for i in range(len(self._raw())))

    def __setitem__(self, index: int, value: Any) -> None:
        self._raw()[index] = _unwrap(value)

    def __len__(self) -> int:
        return len(self._raw())

    def __repr__(self) -> str:
        return f"ConfigList({dotted(self._path)}: {self._raw()!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (list, tuple, ConfigList)):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


def config_error(node: _View, message: str, key: Any = None, hint: str | None = None) -> ConfigError:
    """Return a ConfigError about ``node`` (or its ``key``) carrying the YAML path, file and line.

    Recipes use it to report a bad value where the user wrote it:
    ``raise config_error(cfg.optimizer, "must be positive", "lr")``.
    """
    return node._error(message, key, hint)


def location_of(node: _View, key: Any = None) -> tuple[str, int] | None:
    """Return (file, line) where ``node`` (or its ``key``) was written; line 0 means the command line."""
    path = node._path if key is None else (*node._path, key)
    return node._root.locations.get(path)


def yaml_path(node: _View) -> str:
    """Return the dotted path of ``node`` from the top of its config ('' for the top)."""
    return dotted(node._path)


def _unwrap(value: Any) -> Any:
    return value.to_container(resolve=False) if isinstance(value, _View) else value


def _lookup(root: _Root, reference: str, where: tuple) -> Any:
    node: Any = ConfigNode(root, ())
    walked: list = []
    file, line = root.locations.get(where, (root.file, None))
    for part in split_path(reference):
        if not isinstance(node, _View):
            raise ConfigError(
                f"`${{{reference}}}` goes inside `{dotted(walked)}`, which is a value, not a section",
                path=dotted(where),
                file=file,
                line=line,
            )
        walked.append(part)
        try:
            node = node[part]
        except (ConfigKeyError, ConfigIndexError):
            candidates = list(node) if isinstance(node, ConfigNode) else []
            raise ConfigError(
                f"`${{{reference}}}` refers to `{dotted(walked)}`, which does not exist",
                path=dotted(where),
                file=file,
                line=line,
                hint=did_you_mean(str(part), [str(c) for c in candidates]),
            ) from None
    return node


def _resolve_string(root: _Root, text: str, path: tuple) -> Any:
    key = dotted(path)
    if key in root.resolving:
        chain = " -> ".join([*root.resolving[root.resolving.index(key) :], key])
        root.resolving.clear()
        raise ConfigError(f"references form a cycle: {chain}", path=key, hint="break the cycle with a literal value")
    root.resolving.append(key)
    try:
        value = interpolate(text, key, lambda ref: _lookup(root, ref, path), parse_yaml_value)
    except ConfigError as exc:
        if exc.file is None and exc.path == key and path in root.locations:
            exc.file, exc.line = root.locations[path]
        raise
    finally:
        if root.resolving and root.resolving[-1] == key:
            root.resolving.pop()
    return value


def _resolved_copy(root: _Root, value: Any, path: tuple) -> Any:
    if isinstance(value, dict):
        return {k: _resolved_copy(root, v, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved_copy(root, v, (*path, i)) for i, v in enumerate(value)]
    if has_interpolation(value):
        resolved = _resolve_string(root, value, path)
        return resolved.to_container() if isinstance(resolved, _View) else resolved
    return copy.deepcopy(value)


def _escape_references(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _escape_references(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape_references(v) for v in value]
    return value.replace("${", "\\${") if isinstance(value, str) else value


def config_from_dict(data: Mapping, file: str | None = None, locations: Locations | None = None) -> ConfigNode:
    """Wrap a plain mapping (deep-copied) as a ConfigNode root."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"a config must be a mapping, got {type(data).__name__}", file=file)
    return ConfigNode(_Root(copy.deepcopy(dict(data)), locations, file), ())
