"""The one exception type of automodel.config, carrying where in the YAML a problem is."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ConfigError(ValueError):
    """A mistake in a config file, an override or the environment it reads.

    ``user_error = True`` is the protocol the CLI and recipes use to print the message
    as one paragraph with exit status 2 instead of a traceback.

    Attributes:
        message: what is wrong, in one sentence.
        path: the dotted YAML path (``optimizer.lr``), or None.
        file: the file (or ``command line``) the value came from, or None.
        line: 1-based line in ``file``, or None.
        hint: what to do about it (``did you mean `lr`?``), or None.
    """

    user_error = True

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        file: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.message = message
        self.path = path
        self.file = file
        self.line = line
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = f"{self.file}:{self.line}: " if self.line else f"{self.file}: "
        key = f"`{self.path}`: " if self.path else ""
        text = f"{where}{key}{self.message}"
        if self.hint:
            text = f"{text.rstrip('.')}; {self.hint}"
        return text


class ConfigKeyError(ConfigError, KeyError, AttributeError):
    """A key that is not in the config; also a KeyError and an AttributeError.

    Being both lets ``key in cfg``, ``cfg.get(key)`` and ``getattr(cfg, key, default)``
    keep their usual Python meaning while the message still names the YAML path.
    """

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return ConfigError.__str__(self)


class ConfigIndexError(ConfigError, IndexError):
    """A list index that is not in a config list; also an IndexError, so iteration stops as usual."""

    def __str__(self) -> str:
        return ConfigError.__str__(self)


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """Return the candidate closest to ``name`` (difflib ratio >= 0.6), or None."""
    matches = difflib.get_close_matches(name, [str(c) for c in candidates], n=1)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str | None:
    """Return ``did you mean `x`?`` for the closest candidate, or None when none is close."""
    match = closest(name, candidates)
    return f"did you mean `{match}`?" if match else None
