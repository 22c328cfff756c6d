"""Reading rows as Python values with `datasets` Image values left undecoded.

`datasets` decodes Image columns when a row is read, so a corrupt image would fail there,
before the row it belongs to is known; reading undecoded values lets ``open_image`` report
(or skip) it by row. Every other feature is decoded as usual.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from automodel.data.llm.rows import BATCH_ROWS

if TYPE_CHECKING:
    import datasets


class UndecodedRows:
    """The rows of a ``datasets.Dataset``, read one by one or in order, Image values as ``{"bytes", "path"}``."""

    def __init__(self, rows: datasets.Dataset) -> None:
        self._table = rows.with_format("arrow")
        self._features = copy.deepcopy(rows.features)
        _stop_image_decoding(self._features)

    def __len__(self) -> int:
        return len(self._table)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return row ``index`` as a dict of Python values."""
        return self._features.decode_example(self._table[index].to_pylist()[0])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        """Yield every row as a dict of Python values, in order."""
        for table in self._table.iter(batch_size=BATCH_ROWS):
            for row in table.to_pylist():
                yield self._features.decode_example(row)


def _stop_image_decoding(feature: Any) -> None:
    """Set ``decode=False`` on every Image feature inside ``feature``, in place."""
    import datasets

    if isinstance(feature, datasets.Image):
        feature.decode = False
    elif isinstance(feature, dict):
        for inner in feature.values():
            _stop_image_decoding(inner)
    elif isinstance(feature, (list, tuple)):
        for inner in feature:
            _stop_image_decoding(inner)
    elif hasattr(feature, "feature"):  # List, LargeList, Sequence
        _stop_image_decoding(feature.feature)
