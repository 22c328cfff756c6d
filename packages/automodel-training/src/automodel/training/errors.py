"""The one exception type of automodel.training."""

from __future__ import annotations


class TrainingError(ValueError):
    """A training setting that cannot work (batch arithmetic, schedule lengths, ...).

    ``user_error = True`` makes the CLI print it as one paragraph with exit status 2.
    """

    user_error = True
