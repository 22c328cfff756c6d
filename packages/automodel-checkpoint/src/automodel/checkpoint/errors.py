"""The one exception type of automodel.checkpoint, and the closest-name hint its messages use."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CheckpointError(ValueError):
    """A checkpoint that cannot be written or read as asked: a missing or incomplete step
    directory, keys that do not match the model, a setting with an impossible value.

    The message names the path or setting and says what to do. ``user_error = True`` is
    the protocol the CLI and recipes use to print it as one paragraph with exit status 2
    instead of a traceback.
    """

    user_error = True


def describe_keys(keys: Iterable[str], candidates: Iterable[str], *, limit: int = 5) -> str:
    """Return ``"a (closest: b), c"`` for up to ``limit`` keys, each with its closest candidate name."""
    keys, candidates = sorted(keys), list(candidates)
    parts = []
    for key in keys[:limit]:
        close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        parts.append(f"{key} (closest: {close[0]})" if close else key)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(parts) + more


def brief(exc: BaseException, limit: int = 300) -> str:
    """Return ``"TypeName: message"`` on one line of at most ``limit`` characters, to quote a cause in a message."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
