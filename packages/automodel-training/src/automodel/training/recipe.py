"""BaseRecipe: the shape every recipe has, the tracking of what a checkpoint must hold, and running one."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any


def is_stateful(value: Any) -> bool:
    """True for objects that can be saved and restored (``state_dict`` and ``load_state_dict``)."""
    return callable(getattr(value, "state_dict", None)) and callable(getattr(value, "load_state_dict", None))


class BaseRecipe:
    """A recipe is ``setup()`` then ``run_train_validation_loop()``.

    Every public attribute assigned an object with ``state_dict``/``load_state_dict``
    (model, optimizer, LR scheduler, step scheduler, dataloader, ...) is recorded, in
    assignment order, so a checkpointer can save and restore exactly those.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        tracked = self.__dict__.setdefault("_stateful_names", [])
        if not name.startswith("_"):
            if is_stateful(value) and name not in tracked:
                tracked.append(name)
            elif not is_stateful(value) and name in tracked:
                tracked.remove(name)
        super().__setattr__(name, value)

    def stateful_attributes(self) -> dict[str, Any]:
        """Return ``{name: object}`` for every tracked stateful attribute, in assignment order."""
        return {name: getattr(self, name) for name in self.__dict__.get("_stateful_names", [])}

    def setup(self) -> None:
        """Build everything the run needs from the config."""
        raise NotImplementedError

    def run_train_validation_loop(self) -> None:
        """Train, validating and checkpointing on schedule."""
        raise NotImplementedError


def show_component_logs(first_process: bool) -> None:
    """Print the INFO messages of automodel packages (dropped samples, packing efficiency, ...) on stderr.

    Args:
        first_process: True on the process that prints; the others keep only warnings, so N
            processes do not print N copies.
    """
    logger = logging.getLogger("automodel")
    if not first_process:
        logger.setLevel(logging.WARNING)
        return
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def run_recipe(
    recipe_class: Callable[[Any], BaseRecipe],
    cfg: Any,
    *,
    first_process: bool = True,
    cleanup: Callable[[], None] | None = None,
) -> int:
    """Build ``recipe_class(cfg)``, set it up and run it; return 0.

    Args:
        recipe_class: the recipe (a BaseRecipe subclass taking the config).
        cfg: the loaded config.
        first_process: whether this process prints the components' INFO logs.
        cleanup: called afterwards whether the run ends or fails (destroying the process group).
    """
    show_component_logs(first_process)
    recipe = recipe_class(cfg)
    try:
        recipe.setup()
        recipe.run_train_validation_loop()
    finally:
        if cleanup is not None:
            cleanup()
    return 0


def main_reporting_user_errors(recipe_main: Callable[[], int]) -> int:
    """Call ``recipe_main()``; print a user error (``user_error = True``) as one line on stderr and return 2.

    Other exceptions propagate with their traceback. The CLI's worker does the same for runs it starts.
    """
    try:
        return recipe_main()
    except Exception as exc:
        if not getattr(exc, "user_error", False):
            raise
        print(f"automodel: error: {exc}", file=sys.stderr)
        return 2
