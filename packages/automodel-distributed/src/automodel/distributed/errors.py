"""The one exception type of automodel.distributed."""

from __future__ import annotations


class DistributedError(ValueError):
    """A ``distributed:`` setting or environment that cannot work (sizes that do not divide, no CUDA for CP, ...).

    ``user_error = True`` makes the CLI print it as one paragraph with exit status 2.
    """

    user_error = True
