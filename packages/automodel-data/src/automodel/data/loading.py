"""Load a dataset from local data files, a ``save_to_disk`` directory or the Hugging Face Hub.

``datasets`` (with pandas and pyarrow, about 80 MiB resident) is imported when a dataset is
loaded, not with ``automodel.data``: a run over image folders or a latent cache never pays for it.
"""

from __future__ import annotations

import codecs
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automodel.data.errors import DataError, dataset_label

# File suffix -> the `datasets` builder that reads it.
DATA_FILE_BUILDERS = {
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".csv": "csv",
    ".arrow": "arrow",
    ".txt": "text",
}

PathOrId = str | os.PathLike[str]

if TYPE_CHECKING:
    import datasets


def load_hf_dataset(
    path_or_dataset_id: PathOrId | Sequence[PathOrId], split: str = "train", **kwargs: Any
) -> datasets.Dataset | datasets.IterableDataset:
    """Load one split of a dataset, from local data or the Hugging Face Hub.

    Args:
        path_or_dataset_id: a local data file (``.json``, ``.jsonl``, ``.parquet``, ``.csv``,
            ``.arrow``, ``.txt``) or a list of them, a directory written by ``save_to_disk``,
            a directory of data files, or a hub id such as ``rajpurkar/squad``.
        split: the split, with slicing: ``"train"``, ``"train[:90%]"``, ``"train[100:]"``.
            Local data files have one split, ``train``.
        **kwargs: passed to ``datasets.load_dataset`` (``load_from_disk`` for a saved
            directory), e.g. ``streaming=True`` or ``name=`` for a hub subset.

    Returns:
        A ``datasets.Dataset``, or a ``datasets.IterableDataset`` when ``streaming=True``.

    Raises:
        DataError: a local-looking path that does not exist, an unknown suffix or split,
            an unreadable file, or a hub id that cannot be loaded.
    """
    label = dataset_label(path_or_dataset_id)
    if not isinstance(path_or_dataset_id, (str, os.PathLike)):
        return _load_files([Path(p).expanduser() for p in path_or_dataset_id], split, label, kwargs)
    path = Path(path_or_dataset_id).expanduser()
    if path.is_file():
        return _load_files([path], split, label, kwargs)
    if path.is_dir():
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            return _load_saved(path, split, label, kwargs)
        return _load_directory(path, split, label, kwargs)
    if _looks_local(os.fspath(path_or_dataset_id)):
        raise DataError(
            "no such file or directory",
            dataset=label,
            hint=f"check the path (a relative path starts from {os.getcwd()})",
        )
    return _load_hub(os.fspath(path_or_dataset_id), split, kwargs)


def _looks_local(text: str) -> bool:
    """Whether a string that names nothing on disk was meant as a path rather than a hub id."""
    return (
        text.startswith(("/", ".", "~"))
        or "\\" in text
        or text.count("/") > 1
        or Path(text).suffix.lower() in DATA_FILE_BUILDERS
    )


def _load_files(paths: list[Path], split: str, label: str, kwargs: dict[str, Any]) -> Any:
    """Read local data files with the `datasets` builder their suffix names."""
    if not paths:
        raise DataError("the list of data files is empty", dataset=label, hint="name at least one file")
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise DataError(f"no such file: {', '.join(missing)}", dataset=label, hint="check the paths")
    empty = [str(p) for p in paths if p.stat().st_size == 0]
    if empty:
        raise DataError(f"empty file: {', '.join(empty)}", dataset=label, hint="write rows into it or leave it out")
    suffixes = sorted({p.suffix.lower() for p in paths})
    unknown = [s or "(none)" for s in suffixes if s not in DATA_FILE_BUILDERS]
    if unknown:
        raise DataError(
            f"cannot read files with suffix {', '.join(unknown)}",
            dataset=label,
            hint=f"use one of {', '.join(DATA_FILE_BUILDERS)}",
        )
    builders = {DATA_FILE_BUILDERS[s] for s in suffixes}
    if len(builders) > 1:
        raise DataError(
            f"the files mix formats ({', '.join(suffixes)})", dataset=label, hint="list files of one format"
        )
    names = _split_names(split)
    if names != {"train"}:
        raise DataError(
            f"local data files have one split, `train`, not {split!r}",
            dataset=label,
            hint="ask for `train` or a slice of it such as `train[:90%]` or `train[90%:]`",
        )
    import datasets
    from datasets.exceptions import DatasetGenerationError

    builder = builders.pop()
    if builder == "json":  # pyarrow reads bad UTF-8 in JSON without a word; rows then fail when used
        _check_utf8(paths, label)
    try:
        return datasets.load_dataset(builder, data_files=[str(p) for p in paths], split=split, **kwargs)
    except (DatasetGenerationError, UnicodeDecodeError) as error:
        cause = error.__cause__ or error
        if isinstance(cause, UnicodeDecodeError):
            raise DataError(
                f"{_undecodable_line(paths) or 'a row'} is not UTF-8 text",
                dataset=label,
                hint="re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8) or remove that row",
            ) from None
        raise DataError(f"could not be read: {cause}", dataset=label, hint="check the file's format") from error
    except ValueError as error:  # e.g. a slice that selects no row, or an argument the builder does not take
        raise DataError(
            f"could not be loaded with split {split!r}: {error}",
            dataset=label,
            hint="check the split (a slice must select rows) and the other arguments",
        ) from error


def _check_utf8(paths: list[Path], label: str) -> None:
    """Raise DataError naming the file and line when a file of ``paths`` is not UTF-8 (read in 16 MiB chunks)."""
    for path in paths:
        decoder = codecs.getincrementaldecoder("utf-8")()
        try:
            with path.open("rb") as stream:
                while chunk := stream.read(16 << 20):
                    decoder.decode(chunk)
                decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DataError(
                f"{_undecodable_line([path]) or path} is not UTF-8 text",
                dataset=label,
                hint="re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8) or remove that row",
            ) from None


def _undecodable_line(paths: list[Path]) -> str | None:
    """Return ``"<file> line N"`` for the first line of ``paths`` that is not UTF-8, or None when all decode."""
    for path in paths:
        with path.open("rb") as stream:
            for number, line in enumerate(stream, start=1):
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    return f"{path} line {number}"
    return None


def _load_directory(path: Path, split: str, label: str, kwargs: dict[str, Any]) -> Any:
    """Read a directory of data files, letting `datasets` infer the format and splits."""
    import datasets
    from datasets.data_files import EmptyDatasetError
    from datasets.exceptions import DatasetGenerationError

    try:
        return datasets.load_dataset(str(path), split=split, **kwargs)
    except (EmptyDatasetError, DatasetGenerationError) as error:
        raise DataError(
            f"could not be read as a directory of data files: {error}",
            dataset=label,
            hint=f"put {', '.join(DATA_FILE_BUILDERS)} files in it, or name a directory written by `save_to_disk`",
        ) from error


def _load_saved(path: Path, split: str, label: str, kwargs: dict[str, Any]) -> Any:
    """Read a ``save_to_disk`` directory and select (and slice) the split."""
    import datasets

    streaming = kwargs.pop("streaming", False)
    loaded = datasets.load_from_disk(str(path), **kwargs)
    # A saved single split answers to any split name; slicing still applies.
    splits = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else dict.fromkeys(_split_names(split), loaded)
    try:
        instructions = datasets.ReadInstruction.from_spec(split).to_absolute({n: len(d) for n, d in splits.items()})
    except ValueError as error:
        raise DataError(
            f"cannot select split {split!r}: {error}", dataset=label, hint="name one of its splits"
        ) from error
    parts = [splits[i.splitname].select(range(i.from_, i.to)) for i in instructions]
    dataset = parts[0] if len(parts) == 1 else datasets.concatenate_datasets(parts)
    return dataset.to_iterable_dataset() if streaming else dataset


def _load_hub(dataset_id: str, split: str, kwargs: dict[str, Any]) -> Any:
    """Load a dataset by hub id (from the local cache when offline)."""
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    try:
        return datasets.load_dataset(dataset_id, split=split, **kwargs)
    except (DatasetNotFoundError, ConnectionError) as error:
        raise DataError(
            f"could not be loaded from the Hugging Face Hub or its cache: {error}",
            dataset=dataset_id,
            hint="check the id and the network (HF_HUB_OFFLINE), or give the path of a local data file",
        ) from error


def _split_names(split: str) -> set[str]:
    """The split names a split spec refers to: ``"train[:10]+test"`` -> ``{"train", "test"}``."""
    return {part.split("[")[0].strip() for part in split.split("+")}
