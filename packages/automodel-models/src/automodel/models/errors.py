"""The one exception type of automodel.models, and the closest-name hint its messages use."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ModelError(ValueError):
    """A mistake in what a user asked to load or build: a path, a model type, a dtype, a config.

    ``user_error = True`` is the protocol the CLI and recipes use to print the message as one
    paragraph with exit status 2 instead of a traceback. The message names the offending value
    or path and says what to do.
    """

    user_error = True


def closest_names(name: str, candidates: Iterable[str], count: int = 3) -> list[str]:
    """Return up to ``count`` candidates close to ``name`` (difflib ratio >= 0.5), best first."""
    return difflib.get_close_matches(name, list(candidates), n=count, cutoff=0.5)
