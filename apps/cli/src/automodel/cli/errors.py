"""Turning user mistakes into one paragraph on stderr and exit status 2."""

from __future__ import annotations

import sys

USER_ERROR_EXIT = 2


class CliError(Exception):
    """A mistake in how ``automodel`` was called (unknown route, bad launcher flag, ...)."""

    user_error = True


def is_user_error(exc: BaseException) -> bool:
    """True for exceptions that follow the ``user_error = True`` protocol of automodel packages."""
    return bool(getattr(exc, "user_error", False))


def print_error(message: str) -> None:
    """Print ``message`` as one paragraph on stderr, prefixed ``automodel: error:``."""
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(f"automodel: error: {message}", markup=False)


def report(exc: BaseException) -> int:
    """Print a user error and return the exit status 2."""
    print_error(str(exc).strip() or exc.__class__.__name__)
    sys.stderr.flush()
    return USER_ERROR_EXIT
