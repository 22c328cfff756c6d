"""Reading rows for the LLM datasets: the split, the sample limit, and values of named columns."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from automodel.data.errors import DataError
from automodel.data.loading import load_hf_dataset

if TYPE_CHECKING:
    import datasets

PathOrId = str | os.PathLike[str]
BATCH_ROWS = 1000


def load_rows(
    path_or_dataset_id: PathOrId | Sequence[PathOrId], split: str, limit_dataset_samples: int | None, dataset: str
) -> datasets.Dataset:
    """Load a split (see ``load_hf_dataset``) and keep its first ``limit_dataset_samples`` rows when given."""
    if limit_dataset_samples is not None and limit_dataset_samples < 1:
        raise DataError(
            f"limit_dataset_samples must be a positive number of rows, not {limit_dataset_samples}",
            dataset=dataset,
            hint="leave it unset (null) to use every row",
        )
    rows = load_hf_dataset(path_or_dataset_id, split=split)
    if limit_dataset_samples is not None:
        rows = rows.select(range(min(limit_dataset_samples, len(rows))))
    return rows


def require_column(rows: datasets.Dataset, column: str, argument: str, dataset: str) -> None:
    """Raise DataError, listing the dataset's columns, when ``column`` (given as ``argument``) is not one of them."""
    if column not in rows.column_names:
        raise DataError(
            f"{argument} names column {column!r}, which the dataset does not have",
            dataset=dataset,
            hint=f"its columns are {', '.join(rows.column_names)}",
        )


@dataclass(frozen=True)
class ColumnPath:
    """Where a value lives in a row: a column and steps into it (``answers.text.0``: key ``text``, item 0)."""

    column: str
    steps: tuple[str, ...]
    argument: str

    @classmethod
    def parse(cls, spec: str, rows: datasets.Dataset, argument: str, dataset: str) -> ColumnPath:
        """Resolve a column name, or a dotted path whose first part is a column, against the dataset's columns."""
        if spec in rows.column_names:
            return cls(spec, (), argument)
        head, *steps = spec.split(".")
        if not steps:
            require_column(rows, spec, argument, dataset)
        require_column(rows, head, f"{argument} ({spec!r})", dataset)
        return cls(head, tuple(steps), argument)

    def text(self, value: Any, row: int, dataset: str, *, optional: bool = False) -> str:
        """Follow the steps into a column value and return the string there (``""`` for a missing optional one)."""
        for step in self.steps:
            if isinstance(value, dict) and step in value:
                value = value[step]
            elif isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            else:
                raise DataError(
                    f"row {row}: {self.argument} path {'.'.join((self.column, *self.steps))!r} has no {step!r}",
                    dataset=dataset,
                    hint="check the path against the row's structure",
                )
        if value is None and optional:
            return ""
        if not isinstance(value, str):
            raise DataError(
                f"row {row}: {self.argument} gives {type(value).__name__} {value!r:.60}, not text",
                dataset=dataset,
                hint="map a column of strings (a dotted path such as `answers.text.0` reaches inside one)",
            )
        return value
