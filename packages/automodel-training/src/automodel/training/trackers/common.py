"""What the tracker backends share: the ``enabled`` setting, the lazy import of their library and the
warning that a tracker failed while the run goes on."""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import ClassVar

from automodel.training.errors import TrainingError

logger = logging.getLogger("automodel.training.trackers")


@dataclass
class TrackerSettings:
    """The setting every tracker section has.

    Attributes:
        enabled: false keeps the section in the config but starts no tracker (``--logging.wandb.enabled false``).

    ``choices`` (a class attribute) names the settings that take one of a few values, for a recipe's schema.
    """

    choices: ClassVar[dict[str, tuple[str, ...]]] = {}

    enabled: bool = True


def import_library(module: str, tracker: str) -> ModuleType:
    """Import and return ``module``, the library of the tracker set at ``logging.<tracker>``.

    Raises:
        TrainingError: naming the extra to install when the library is absent (or cannot be imported).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        absent = isinstance(exc, ModuleNotFoundError) and exc.name == module
        problem = "is not installed" if absent else f"cannot be imported ({exc})"
        raise TrainingError(
            f"`logging.{tracker}` sets up a {tracker} tracker, but the {module} package {problem}; "
            f"install it with pip install 'automodel-training[{tracker}]', or remove `logging.{tracker}`"
        ) from None


def warn_failed(tracker: str, action: str, exc: Exception) -> None:
    """Log a warning that ``tracker`` failed at ``action`` (the run goes on: training.jsonl keeps every record)."""
    logger.warning(
        "the %s tracker failed to %s (%s: %s); training goes on, and training.jsonl and validation.jsonl "
        "keep every record",
        tracker,
        action,
        type(exc).__name__,
        exc,
    )
