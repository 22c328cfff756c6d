"""The one exception type of automodel.data, naming the dataset a mistake is about."""

from __future__ import annotations

import os
from collections.abc import Sequence


class DataError(ValueError):
    """A mistake in a dataset or in the arguments that read it.

    ``user_error = True`` is the protocol the CLI and recipes use to print the message
    as one paragraph with exit status 2 instead of a traceback.

    Attributes:
        message: what is wrong, in one sentence.
        dataset: the dataset's path or hub id, or None when there is none to name.
        hint: what to do about it, or None.
    """

    user_error = True

    def __init__(self, message: str, *, dataset: str | None = None, hint: str | None = None) -> None:
        self.message = message
        self.dataset = dataset
        self.hint = hint
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = f"dataset {self.dataset}: {self.message}" if self.dataset else self.message
        if self.hint:
            text = f"{text.rstrip('.')}; {self.hint}"
        return text


def dataset_label(path_or_dataset_id: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> str:
    """Return how messages name a dataset: its path or hub id, or the files of a list joined by commas."""
    if isinstance(path_or_dataset_id, (str, os.PathLike)):
        return os.fspath(path_or_dataset_id)
    return ", ".join(os.fspath(p) for p in path_or_dataset_id)
