"""Turning user mistakes into one paragraph on stderr and exit status 2."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

USER_ERROR_EXIT = 2
_SHORTEST_HIDDEN = 4  # shorter values ("1", "no") would be replaced inside ordinary words


class CliError(Exception):
    """A mistake in how ``automodel`` was called (unknown route, bad launcher flag, ...)."""

    user_error = True


def is_user_error(exc: BaseException) -> bool:
    """True for exceptions that follow the ``user_error = True`` protocol of automodel packages."""
    return bool(getattr(exc, "user_error", False))


def hide_secret_environment(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Return ``text`` with the value of every secret-looking environment variable replaced by ``${env:NAME}``.

    A variable looks secret by the config's rule (``HF_TOKEN``, ``WANDB_API_KEY``); values
    shorter than 4 characters are left alone. This is the last guard before a message is shown
    or written: a recipe's message that echoes a value read from the environment loses it here.
    """
    from automodel.config import is_secret_key

    environ = os.environ if environ is None else environ
    secrets = [(v, n) for n, v in environ.items() if is_secret_key(n) and len(v.strip()) >= _SHORTEST_HIDDEN]
    for value, name in sorted(secrets, key=lambda pair: -len(pair[0])):
        text = text.replace(value, f"${{env:{name}}}")
    return text


def print_error(message: str) -> None:
    """Print ``message`` as one paragraph on stderr, prefixed ``automodel: error:``; secret env values are hidden."""
    from rich.console import Console

    text = f"automodel: error: {hide_secret_environment(message)}"
    Console(stderr=True, highlight=False, soft_wrap=True).print(text, markup=False)


def report(exc: BaseException) -> int:
    """Print a user error and return the exit status 2."""
    print_error(str(exc).strip() or exc.__class__.__name__)
    sys.stderr.flush()
    return USER_ERROR_EXIT
