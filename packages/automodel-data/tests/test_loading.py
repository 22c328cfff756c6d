"""load_hf_dataset: local files of every format, saved directories, split slicing, and what a user gets wrong."""

from __future__ import annotations

from pathlib import Path

import datasets
import pytest
from data_test_helpers import write_jsonl

from automodel.data import DataError, load_hf_dataset

ROWS = [{"text": f"document {i}", "n": i} for i in range(10)]


def _write(tmp_path: Path, suffix: str) -> Path:
    table = datasets.Dataset.from_list(ROWS)
    path = tmp_path / f"data{suffix}"
    if suffix == ".json":
        table.to_json(path, lines=False)
    elif suffix == ".jsonl":
        write_jsonl(path, ROWS)
    elif suffix == ".parquet":
        table.to_parquet(path)
    elif suffix == ".csv":
        table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet", ".csv"])
def test_a_local_file_loads_by_its_suffix(tmp_path: Path, suffix: str) -> None:
    loaded = load_hf_dataset(_write(tmp_path, suffix))
    assert loaded["text"] == [row["text"] for row in ROWS]
    assert loaded["n"] == list(range(10))


def test_an_arrow_file_and_a_list_of_files_load(tmp_path: Path) -> None:
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(ROWS).save_to_disk(saved)
    arrow = next(saved.glob("*.arrow"))
    assert load_hf_dataset(str(arrow))["n"] == list(range(10))
    first = write_jsonl(tmp_path / "a.jsonl", ROWS[:4])
    second = write_jsonl(tmp_path / "b.jsonl", ROWS[4:])
    assert load_hf_dataset([first, second])["n"] == list(range(10))


def test_split_slicing_works_for_local_files(tmp_path: Path) -> None:
    path = _write(tmp_path, ".jsonl")
    assert load_hf_dataset(path, split="train[:80%]")["n"] == list(range(8))
    assert load_hf_dataset(path, split="train[80%:]")["n"] == [8, 9]
    assert load_hf_dataset(path, split="train[2:4]")["n"] == [2, 3]


def test_a_save_to_disk_directory_loads_with_its_split_sliced(tmp_path: Path) -> None:
    splits = datasets.DatasetDict(
        {"train": datasets.Dataset.from_list(ROWS), "validation": datasets.Dataset.from_list(ROWS[:3])}
    )
    splits.save_to_disk(tmp_path / "dict")
    datasets.Dataset.from_list(ROWS).save_to_disk(tmp_path / "single")
    assert load_hf_dataset(tmp_path / "dict", split="validation")["n"] == [0, 1, 2]
    assert load_hf_dataset(tmp_path / "dict", split="train[:3]+validation[2:]")["n"] == [0, 1, 2, 2]
    assert load_hf_dataset(tmp_path / "single", split="train[50%:]")["n"] == [5, 6, 7, 8, 9]


def test_streaming_a_local_file_reads_rows_lazily(tmp_path: Path) -> None:
    stream = load_hf_dataset(_write(tmp_path, ".jsonl"), streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    assert [row["n"] for row in stream] == list(range(10))


@pytest.mark.parametrize("path", ["missing.jsonl", "./data/train", "/no/such/dir", "data/sub/train"])
def test_a_local_looking_path_that_does_not_exist_is_a_data_error(path: str) -> None:
    with pytest.raises(DataError, match="no such file or directory") as error:
        load_hf_dataset(path)
    assert path in str(error.value)
    assert error.value.user_error is True


def test_a_hub_id_that_cannot_be_loaded_offline_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"nobody/no-such-dataset.*Hub"):
        load_hf_dataset("nobody/no-such-dataset")


def test_local_files_have_only_a_train_split(tmp_path: Path) -> None:
    path = _write(tmp_path, ".jsonl")
    with pytest.raises(DataError, match=r"one split, `train`, not 'validation'.*train\[:90%\]"):
        load_hf_dataset(path, split="validation")


def test_an_unknown_suffix_and_a_malformed_file_are_data_errors(tmp_path: Path) -> None:
    odd = tmp_path / "rows.xlsx"
    odd.write_text("x", encoding="utf-8")
    with pytest.raises(DataError, match=r"suffix \.xlsx.*\.jsonl"):
        load_hf_dataset(odd)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": \n', encoding="utf-8")
    with pytest.raises(DataError, match=r"broken.jsonl: could not be read"):
        load_hf_dataset(broken)


def test_a_saved_directory_without_the_split_is_a_data_error(tmp_path: Path) -> None:
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(tmp_path / "dict")
    with pytest.raises(DataError, match=r"cannot select split 'test'.*train"):
        load_hf_dataset(tmp_path / "dict", split="test")


@pytest.mark.parametrize(
    ("suffix", "rows"),
    [
        (".jsonl", b'{"text": "fine"}\n{"text": "fine too"}\n{"text": "caf\xe9 au lait"}\n'),
        (".csv", b"text\nfine\nfine too\ncaf\xe9 au lait\n"),
        (".txt", b"fine\nfine too\ncaf\xe9 au lait\n"),
    ],
)
def test_a_row_that_is_not_utf8_is_named_by_file_and_line(tmp_path: Path, suffix: str, rows: bytes) -> None:
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes(rows)
    with pytest.raises(DataError, match=rf"{path} line \d is not UTF-8 text; re-encode the file as UTF-8"):
        load_hf_dataset(path)
