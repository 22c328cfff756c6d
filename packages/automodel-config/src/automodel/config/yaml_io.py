"""YAML reading and writing: safe loading with source lines, YAML 1.2 scalars, duplicates refused.

PyYAML implements YAML 1.1, where ``1e-4`` is a string and ``no`` is False. Configs are
read with YAML 1.2 rules for both (``1e-4`` is a float, only true/false are booleans), and
written so that every string reloads as a string.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from automodel.config.errors import ConfigError

Location = tuple[str, int]  # (file, 1-based line)
Locations = dict[tuple, Location]
MAX_VALUES = 1_000_000  # values a document may expand to through anchors and aliases

_FLOAT = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
    |[-+]?\.[0-9_]+(?:[eE][-+]?[0-9]+)?
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")


def _resolvers_without(tags: set[str]) -> dict:
    return {
        first: [(tag, regexp) for tag, regexp in pairs if tag not in tags]
        for first, pairs in yaml.SafeLoader.yaml_implicit_resolvers.items()
    }


class _Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 booleans and floats."""


_Loader.yaml_implicit_resolvers = _resolvers_without({"tag:yaml.org,2002:bool", "tag:yaml.org,2002:float"})
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", _BOOL, list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return loader.construct_scalar(node).lower() == "true"


_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)


class _Dumper(yaml.SafeDumper):
    """SafeDumper that quotes any string our loader or YAML 1.1 would read as non-string."""


_Dumper.yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeDumper.yaml_implicit_resolvers.items()}
_Dumper.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789."))
_Dumper.add_representer(tuple, yaml.SafeDumper.represent_list)


def _mark_error(exc: yaml.YAMLError, file: str) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return ConfigError(f"invalid YAML: {problem}", file=file)
    return ConfigError(
        f"invalid YAML (line {mark.line + 1}, column {mark.column + 1}): {problem}",
        file=file,
        line=mark.line + 1,
        hint="fix the syntax there (indentation, a missing colon or an unclosed quote or bracket)",
    )


class _Builder:
    """Turns a composed YAML node graph into plain Python data plus a path -> line map."""

    def __init__(self, loader: _Loader, file: str) -> None:
        self.loader = loader
        self.file = file
        self.locations: Locations = {}
        self._active: set[int] = set()

    def build(self, node: yaml.Node, path: tuple) -> Any:
        self.locations.setdefault(path, (self.file, node.start_mark.line + 1))
        if id(node) in self._active:
            raise ConfigError("a YAML alias refers to itself", file=self.file, line=node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            self._active.add(id(node))
            try:
                return self._mapping(node, path)
            finally:
                self._active.discard(id(node))
        if isinstance(node, yaml.SequenceNode):
            self._active.add(id(node))
            try:
                return [self.build(child, (*path, i)) for i, child in enumerate(node.value)]
            finally:
                self._active.discard(id(node))
        return self.loader.construct_object(node, deep=True)

    def _key(self, key_node: yaml.Node, path: tuple) -> str | int:
        key = self.loader.construct_object(key_node, deep=True)
        if not isinstance(key, (str, int)) or isinstance(key, bool):
            line = key_node.start_mark.line + 1
            raise ConfigError(
                f"mapping keys must be strings, got {key!r}", file=self.file, line=line, path=_dotted(path) or None
            )
        return key

    def _mapping(self, node: yaml.MappingNode, path: tuple) -> dict:
        seen: dict = {}
        for key_node, _ in node.value:  # keys written twice here; a key may override a merged (<<) one
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key, line = self._key(key_node, path), key_node.start_mark.line + 1
            if key in seen:
                raise ConfigError(
                    f"key `{key}` appears twice (lines {seen[key]} and {line})",
                    path=_dotted((*path, key)),
                    file=self.file,
                    line=line,
                    hint="keep one of them",
                )
            seen[key] = line
        self.loader.flatten_mapping(node)  # resolves YAML merge keys: merged pairs first, so written keys win
        result: dict = {}
        for key_node, value_node in node.value:
            key = self._key(key_node, path)
            self.locations[(*path, key)] = (self.file, key_node.start_mark.line + 1)
            result[key] = self.build(value_node, (*path, key))
        return result


def _dotted(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def expanded_size(node: yaml.Node, limit: int = MAX_VALUES) -> int:
    """Return how many values the composed ``node`` expands to once every alias is copied, counting up to ``limit + 1``.

    Each node is measured once (aliases share nodes), so a "billion laughs" document is
    measured in the time it takes to read it. An alias inside its own anchor counts 0 here
    (reading it is an error of its own).
    """
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(current: yaml.Node) -> int:
        key = id(current)
        if key in sizes or key in active:
            return sizes.get(key, 0)
        active.add(key)
        if isinstance(current, yaml.SequenceNode):
            children = current.value
        elif isinstance(current, yaml.MappingNode):
            children = [child for pair in current.value for child in pair]
        else:
            children = []
        total = 1
        for child in children:
            total = min(total + size(child), limit + 1)
        active.discard(key)
        sizes[key] = total
        return total

    return size(node)


def parse_yaml_text(text: str, file: str = "<string>") -> tuple[Any, Locations]:
    """Parse YAML text into plain data and a map from key path tuples to (file, line).

    Raises ConfigError for invalid YAML, and for a document nested too deeply or expanding,
    through anchors and aliases, to more than ``MAX_VALUES`` values (a "billion laughs").
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        if expanded_size(node) > MAX_VALUES:
            raise ConfigError(
                f"the YAML expands to more than {MAX_VALUES:,} values through anchors and aliases (&name / *name)",
                file=file,
                hint="this looks like a YAML bomb; write the repeated sections out, or use fewer nested aliases",
            )
        builder = _Builder(loader, file)
        return builder.build(node, ()), builder.locations
    except yaml.YAMLError as exc:
        raise _mark_error(exc, file) from None
    except RecursionError:
        raise ConfigError("the YAML is nested too deeply to read", file=file, hint="flatten its sections") from None
    finally:
        loader.dispose()


def load_yaml_file(path: str | Path) -> tuple[dict, Locations]:
    """Read a YAML config file whose top level is a mapping.

    Returns the plain data and its locations. Raises ConfigError for a missing or
    unreadable file, a syntax error (with line and column), duplicate keys, or a
    top level that is not a mapping.
    """
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("config file not found", file=file, hint="check the path given to -c/--config") from None
    except IsADirectoryError:
        raise ConfigError("is a directory, not a config file", file=file, hint="pass the YAML file itself") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the config file ({exc.__class__.__name__}: {exc})", file=file) from None
    data, locations = parse_yaml_text(text, file)
    if data is None:
        raise ConfigError("the config file is empty", file=file, hint="it needs at least one section")
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level of a config must be a mapping of sections, got a {type(data).__name__}", file=file, line=1
        )
    return data, locations


def parse_yaml_value(text: str) -> Any:
    """Parse one override value with the config's YAML rules (``1e-4`` -> float, ``[1,2]`` -> list)."""
    data, _ = parse_yaml_text(text, "command line")
    return data


def dump_yaml(data: Any) -> str:
    """Write plain data as block-style YAML that ``parse_yaml_text`` reads back to equal data."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
