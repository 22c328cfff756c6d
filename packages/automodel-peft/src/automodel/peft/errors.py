"""The one exception type of automodel.peft."""

from __future__ import annotations


class PeftError(ValueError):
    """A PEFT setting or adapter that cannot work (bad rank, unmatched target, unreadable adapter, ...).

    ``user_error = True`` makes the CLI print it as one paragraph with exit status 2.
    """

    user_error = True
