"""The rows of an image-caption dataset: an image folder's metadata file, or any dataset ``load_hf_dataset`` reads."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from automodel.data.errors import DataError
from automodel.data.llm.rows import require_column
from automodel.data.loading import load_hf_dataset
from automodel.data.vlm.images import image_base
from automodel.data.vlm.rows import UndecodedRows

METADATA_FILES = ("metadata.jsonl", "metadata.csv")
SAVED_DATASET_FILES = ("state.json", "dataset_dict.json")


@dataclass(frozen=True)
class CaptionRows:
    """Rows as dicts, where relative image paths start from, and how to name a row in a message.

    Attributes:
        rows: the rows, in order (a list for a metadata file, undecoded `datasets` rows otherwise).
        base_dir: the folder relative image paths start from, or None (a hub dataset).
        metadata: the metadata file the rows come from, or None.
        lines: the 1-based line of each row in ``metadata``, or None.
    """

    rows: Sequence[dict[str, Any]]
    base_dir: Path | None
    metadata: Path | None = None
    lines: list[int] | None = None

    def where(self, position: int) -> str:
        """Name row ``position`` for a message: ``<metadata file> line N``, or ``row N`` of a `datasets` split."""
        if self.metadata is not None and self.lines is not None:
            return f"{self.metadata} line {self.lines[position]}"
        return f"row {position}"


def load_caption_rows(
    path_or_dataset_id: str | os.PathLike[str],
    *,
    image_column: str,
    caption_column: str,
    split: str,
    limit: int | None,
    name: str,
) -> CaptionRows:
    """Read the rows of an image folder (``metadata.jsonl`` or ``metadata.csv``) or of another dataset.

    A folder with a metadata file is read directly, so messages can name the line of a bad
    row; its images are found relative to the folder. Anything else (a data file, a
    ``save_to_disk`` folder, a hub id) is read by ``load_hf_dataset`` and must have both columns.

    Args:
        path_or_dataset_id: the folder, data file or hub id.
        image_column: the column naming (or holding) each image.
        caption_column: the column holding each caption.
        split: the split to read; an image folder has only ``train``.
        limit: read only this many rows, or None for all.
        name: the dataset's name, for errors.

    Raises:
        DataError: a folder without a metadata file (or with both), a split other than
            ``train`` for a folder, a metadata line that is not a JSON object or not UTF-8, a
            missing column, or a ``limit`` that is not positive.
    """
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise DataError(
            f"limit must be a positive number of rows, not {limit!r}", dataset=name, hint="leave it unset (null)"
        )
    folder = Path(path_or_dataset_id).expanduser()
    if folder.is_dir() and not any((folder / f).is_file() for f in SAVED_DATASET_FILES):
        return _read_folder(folder, image_column, caption_column, split, limit, name)
    rows = load_hf_dataset(path_or_dataset_id, split=split)
    for column, argument in ((image_column, "image_column"), (caption_column, "caption_column")):
        require_column(rows, column, argument, name)
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    return CaptionRows(UndecodedRows(rows.select_columns([image_column, caption_column])), image_base(folder, None))


def _read_folder(
    folder: Path, image_column: str, caption_column: str, split: str, limit: int | None, name: str
) -> CaptionRows:
    """Read an image folder's metadata file, keeping each row's line number."""
    found = [folder / f for f in METADATA_FILES if (folder / f).is_file()]
    if not found:
        raise DataError(
            "the folder has no metadata.jsonl or metadata.csv",
            dataset=name,
            hint=f"write metadata.jsonl with one line per image, e.g. "
            f'{{"{image_column}": "0001.png", "{caption_column}": "a red square"}}',
        )
    if len(found) > 1:
        raise DataError("the folder has both metadata.jsonl and metadata.csv", dataset=name, hint="keep one of them")
    if split != "train":
        raise DataError(
            f"an image folder has one split, `train`, not {split!r}",
            dataset=name,
            hint="set split: train (and limit to read fewer rows)",
        )
    metadata = found[0]
    read = _read_jsonl if metadata.suffix == ".jsonl" else _read_csv
    lines, rows = read(metadata, (image_column, caption_column), limit, name)
    return CaptionRows(rows, folder, metadata, lines)


def _read_jsonl(
    path: Path, columns: tuple[str, ...], limit: int | None, name: str
) -> tuple[list[int], list[dict[str, Any]]]:
    """Read the JSON objects of a JSON-lines file (blank lines skipped) and their line numbers."""
    lines: list[int] = []
    rows: list[dict[str, Any]] = []
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            if limit is not None and len(rows) == limit:
                break
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise DataError(
                    f"{path} line {number} is not UTF-8 text", dataset=name, hint="re-encode the file as UTF-8"
                ) from None
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as error:
                raise DataError(
                    f"{path} line {number} is not valid JSON ({error.msg})", dataset=name, hint="fix that line"
                ) from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path} line {number} holds a {type(row).__name__}, not a JSON object",
                    dataset=name,
                    hint=f"write one object per line with the keys {', '.join(columns)}",
                )
            lines.append(number)
            rows.append(row)
    return lines, rows


def _read_csv(
    path: Path, columns: tuple[str, ...], limit: int | None, name: str
) -> tuple[list[int], list[dict[str, Any]]]:
    """Read the rows of a CSV file with a header line, and the line each row ends on."""
    lines: list[int] = []
    rows: list[dict[str, Any]] = []
    try:
        with path.open(encoding="utf-8", newline="") as stream:
            reader = csv.DictReader(stream)
            missing = [c for c in columns if c not in (reader.fieldnames or [])]
            if missing:
                raise DataError(
                    f"{path} has no column {', '.join(missing)} in its header line",
                    dataset=name,
                    hint=f"its columns are {', '.join(reader.fieldnames or []) or '(none)'}; "
                    "set image_column and caption_column, or fix the header",
                )
            for row in reader:
                if limit is not None and len(rows) == limit:
                    break
                lines.append(reader.line_num)
                rows.append(row)
    except UnicodeDecodeError:
        raise DataError(f"{path} is not UTF-8 text", dataset=name, hint="re-encode the file as UTF-8") from None
    return lines, rows
