"""ColumnMappedImageTextDataset and make_cord_v2_dataset: image, question and answer columns as a conversation."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from data_test_helpers import write_jsonl
from PIL import Image
from vlm_test_helpers import text_turn, write_png

from automodel.data import DataError
from automodel.data.vlm import ColumnMappedImageTextDataset, make_cord_v2_dataset

MAPPING = {"image": "picture", "question": "q", "answer": "a"}


@pytest.fixture
def vqa_file(tmp_path: Path) -> Path:
    write_png(tmp_path / "images" / "red.png", (255, 0, 0))
    return write_jsonl(tmp_path / "vqa.jsonl", [{"picture": "images/red.png", "q": "What colour?", "a": "Red."}])


def test_each_row_is_a_user_turn_with_image_and_question_then_an_assistant_turn(vqa_file: Path) -> None:
    user, assistant = ColumnMappedImageTextDataset(vqa_file, column_mapping=MAPPING)[0]["messages"]
    assert user["role"] == "user"
    assert user["content"][0]["image"].getpixel((0, 0)) == (255, 0, 0)
    assert user["content"][1] == {"type": "text", "text": "What colour?"}
    assert assistant == text_turn("assistant", "Red.")


def test_a_fixed_prompt_stands_in_for_a_question_column(vqa_file: Path) -> None:
    mapping = {"image": "picture", "answer": "a"}
    user, _ = ColumnMappedImageTextDataset(vqa_file, column_mapping=mapping, prompt="Describe.")[0]["messages"]
    assert user["content"][1] == {"type": "text", "text": "Describe."}
    with pytest.raises(DataError, match=r"column_mapping.question or as prompt=, exactly one"):
        ColumnMappedImageTextDataset(vqa_file, column_mapping=mapping)


def test_a_missing_column_is_named_with_the_columns_there_are(vqa_file: Path) -> None:
    mapping = {**MAPPING, "question": "question"}
    with pytest.raises(
        DataError, match=r"column_mapping.question names column 'question'.*its columns are picture, q, a"
    ):
        ColumnMappedImageTextDataset(vqa_file, column_mapping=mapping)


def test_an_answer_that_is_not_text_names_the_row_and_column(tmp_path: Path) -> None:
    write_png(tmp_path / "red.png")
    path = write_jsonl(tmp_path / "vqa.jsonl", [{"picture": "red.png", "q": "How many?", "a": 3}])
    with pytest.raises(DataError, match=r"row 0: column 'a' \(column_mapping.answer\) gives int 3, not text"):
        ColumnMappedImageTextDataset(path, column_mapping=MAPPING)


def test_a_datasets_image_column_is_read_and_a_corrupt_one_names_its_row(tmp_path: Path) -> None:
    features = datasets.Features(
        {"picture": datasets.Image(), "q": datasets.Value("string"), "a": datasets.Value("string")}
    )
    good = Image.new("RGB", (12, 10), (0, 0, 255))
    rows = {"picture": [good, {"bytes": b"not an image", "path": None}], "q": ["Colour?"] * 2, "a": ["Blue."] * 2}
    datasets.Dataset.from_dict(rows, features=features).to_parquet(tmp_path / "vqa.parquet")
    with pytest.raises(DataError, match=r"row 1: image the image bytes of an Image value cannot be read"):
        ColumnMappedImageTextDataset(tmp_path / "vqa.parquet", column_mapping=MAPPING)
    dataset = ColumnMappedImageTextDataset(tmp_path / "vqa.parquet", column_mapping=MAPPING, skip_bad_samples=True)
    assert (len(dataset), dataset.skipped_samples) == (1, 1)
    assert dataset[0]["messages"][0]["content"][0]["image"].getpixel((0, 0)) == (0, 0, 255)


def test_cord_v2_answers_are_the_ground_truth_parse_as_json(tmp_path: Path) -> None:
    parse = {"menu": [{"nm": "Latte", "price": "4.50"}], "total": {"total_price": "4.50"}}
    write_png(tmp_path / "receipt.png", (255, 255, 255))
    ground_truth = json.dumps({"gt_parse": parse, "meta": {"split": "train"}})
    path = write_jsonl(tmp_path / "cord.jsonl", [{"image": "receipt.png", "ground_truth": ground_truth}])
    user, assistant = make_cord_v2_dataset(dataset_name=path)[0]["messages"]
    assert user["content"][1]["text"] == "Read this receipt and write its contents as JSON."
    assert json.loads(assistant["content"][0]["text"]) == parse


def test_cord_v2_from_the_hub_is_a_data_error_while_offline() -> None:
    with pytest.raises(DataError, match=r"naver-clova-ix/cord-v2: could not be loaded from the Hugging Face Hub"):
        make_cord_v2_dataset(split="train[:4]")
