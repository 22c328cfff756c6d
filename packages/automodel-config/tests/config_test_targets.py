"""Small callables that `_target_` tests build (torch is not installed in this package's tests).

Allowed in tests with AUTOMODEL_TARGET_ALLOWLIST=config_test_targets or
``load_config(..., allow_targets=["config_test_targets"])``.
"""

from __future__ import annotations

import os  # re-exported on purpose: `config_test_targets.os.system` must still be refused
import pickle

__all__ = [
    "NOT_CALLABLE",
    "Adam",
    "UserMistake",
    "build_model",
    "collect",
    "evaluate",
    "explode",
    "load_pickle",
    "open_file",
    "os",
    "positional_only",
    "refuse",
    "run_command",
]

NOT_CALLABLE = 3

# Denied callables under an allowed name: the denylist must catch them by what they are.
load_pickle = pickle.load
evaluate = eval
open_file = open
run_command = os.system


class Adam:
    """Stands in for torch.optim.Adam: records its arguments."""

    def __init__(self, params: object = None, lr: float = 1e-3, betas: tuple = (0.9, 0.999)) -> None:
        self.params = params
        self.lr = lr
        self.betas = betas


def collect(**kwargs: object) -> dict:
    """Return the keyword arguments it was called with."""
    return kwargs


def build_model(name: str, layers: int = 2, optimizer: object = None) -> dict:
    """A builder whose `optimizer` argument is itself built from a nested `_target_`."""
    return {"name": name, "layers": layers, "optimizer": optimizer}


def explode(message: str) -> None:
    """Raise the way a real constructor rejecting a value would."""
    raise RuntimeError(message)


def positional_only(x: int, /, y: int = 1) -> tuple:
    """A callable whose first parameter cannot be given by keyword."""
    return (x, y)


def _private() -> None:
    """Never callable from a config: the name is private."""


class UserMistake(ValueError):
    """A component's user error: the protocol is ``user_error = True``."""

    user_error = True


def refuse(reason: str) -> None:
    """Raise a UserMistake saying ``reason``, as a component refusing a bad value does."""
    raise UserMistake(reason)
