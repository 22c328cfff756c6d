"""Which nn.Linear modules of a model an adapter targets: names, globs and regexes on module paths.

A pattern is one of
- a name: the module path ends with it (``q_proj``, ``self_attn.q_proj``), as in HF peft;
- a glob (it contains ``*``, ``?`` or ``[``): it matches the whole path (``*_proj``, ``*.mlp.*``);
- ``re:`` and a regular expression that must match the whole path (``re:.*layers\\.[01]\\..*``).
"""

from __future__ import annotations

import difflib
import fnmatch
import re
from collections.abc import Sequence

from torch import nn

from automodel.peft.errors import PeftError

PATTERN_HELP = (
    "A name matches the end of a module path (`q_proj`, `self_attn.q_proj`), a glob with * ? [ matches the "
    "whole path (`*_proj`, `*.mlp.*`), and `re:` followed by a regular expression must match the whole path."
)


def check_pattern(pattern: str, field: str) -> None:
    """Raise PeftError when ``pattern`` is empty or its `re:` expression does not compile."""
    if not isinstance(pattern, str) or not pattern.strip():
        raise PeftError(f"{field}: {pattern!r} is not a module name, glob or `re:` pattern. {PATTERN_HELP}")
    if pattern.startswith("re:"):
        try:
            re.compile(pattern[3:])
        except re.error as error:
            raise PeftError(f"{field}: {pattern!r} is not a valid regular expression ({error}).") from error


def matches(pattern: str, path: str) -> bool:
    """True when the module path ``path`` (``model.layers.0.self_attn.q_proj``) matches ``pattern``."""
    if pattern.startswith("re:"):
        return re.fullmatch(pattern[3:], path) is not None
    if any(char in pattern for char in "*?["):
        return fnmatch.fnmatchcase(path, pattern)
    return path == pattern or path.endswith("." + pattern)


def output_embedding_paths(model: nn.Module) -> set[str]:
    """Paths of the Linear modules that produce the vocabulary logits, which `match_all_linear` leaves alone.

    That is the module a Hugging Face model returns from ``get_output_embeddings()``, any Linear whose
    weight is an nn.Embedding's weight (tied embeddings), and any Linear named ``lm_head``.
    """
    head = model.get_output_embeddings() if callable(getattr(model, "get_output_embeddings", None)) else None
    embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    return {
        path
        for path, module in model.named_modules()
        if isinstance(module, nn.Linear)
        and (module is head or id(module.weight) in embedding_weights or path.rsplit(".", 1)[-1] == "lm_head")
    }


def select_linear_modules(
    model: nn.Module,
    target_modules: Sequence[str] | None,
    exclude_modules: Sequence[str] | None = None,
    match_all_linear: bool = False,
) -> list[str]:
    """Return the paths of the nn.Linear modules to adapt, in model order.

    ``target_modules`` patterns select Linear modules (each pattern must select at least one);
    ``match_all_linear`` selects every Linear except the output embedding. A module is then
    dropped when its path or the path of a module containing it matches an ``exclude_modules``
    pattern (each must match some module). Raises PeftError naming the closest module names.
    """
    linears = [path for path, module in model.named_modules() if path and isinstance(module, nn.Linear)]
    if not linears:
        raise PeftError(f"{type(model).__name__} has no nn.Linear module to adapt.")
    if match_all_linear:
        heads = output_embedding_paths(model)
        chosen = [path for path in linears if path not in heads]
    else:
        for pattern in target_modules or ():
            if not any(matches(pattern, path) for path in linears):
                raise _no_match("target_modules", pattern, linears)
        chosen = [path for path in linears if any(matches(pattern, path) for pattern in target_modules or ())]
    all_paths = [path for path, _ in model.named_modules() if path]
    for pattern in exclude_modules or ():
        if not any(matches(pattern, path) for path in all_paths):
            raise _no_match("exclude_modules", pattern, all_paths)
    chosen = [path for path in chosen if not _excluded(path, exclude_modules or ())]
    if not chosen:
        raise PeftError(f"exclude_modules {list(exclude_modules or ())} excludes every targeted Linear module.")
    return chosen


def _excluded(path: str, exclude_modules: Sequence[str]) -> bool:
    """True when ``path`` or one of its parent paths matches an exclude pattern."""
    parts = path.split(".")
    parents = [".".join(parts[:end]) for end in range(len(parts), 0, -1)]
    return any(matches(pattern, parent) for pattern in exclude_modules for parent in parents)


def _no_match(field: str, pattern: str, paths: list[str]) -> PeftError:
    """The error for a pattern that matches no module: the closest short names first, and one full path."""
    names = list(dict.fromkeys(path.rsplit(".", 1)[-1] for path in paths))
    bare = pattern.removeprefix("re:")
    names.sort(key=lambda name: -_similarity(bare, name))
    closest_path = max(paths, key=lambda path: _similarity(bare, path))
    kind = "nn.Linear module" if field == "target_modules" else "module"
    return PeftError(
        f"{field}: {pattern!r} matches no {kind} of the model. Closest {kind} names: {', '.join(names[:8])} "
        f"(closest full path: `{closest_path}`). {PATTERN_HELP}"
    )


def _similarity(a: str, b: str) -> float:
    """How alike two names are, from 0 to 1."""
    return difflib.SequenceMatcher(None, a, b).ratio()
