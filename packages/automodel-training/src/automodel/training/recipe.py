"""BaseRecipe: the shape every recipe has, and the tracking of what a checkpoint must hold."""

from __future__ import annotations

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
