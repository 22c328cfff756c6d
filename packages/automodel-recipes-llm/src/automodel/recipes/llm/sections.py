"""Reporting a component's user error against the YAML section that configured it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from automodel.config import ConfigError, ConfigNode, config_error


@contextmanager
def errors_named_by(cfg: ConfigNode, section: str) -> Iterator[None]:
    """Re-raise a component's user error (DataError, ModelError, PeftError, ...) as a ConfigError naming ``section``.

    ConfigErrors already carry their own YAML path and pass through unchanged.
    """
    try:
        yield
    except Exception as exc:
        if getattr(exc, "user_error", False) and not isinstance(exc, ConfigError):
            raise config_error(cfg, str(exc), section) from None
        raise
