"""ImageTextChatDataset: messages with image parts, images resolved and checked, bad and over-long rows left out."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import pytest
from data_test_helpers import write_jsonl
from PIL import Image
from vlm_test_helpers import build_processor, image_turn, text_turn, write_png

from automodel.data import DataError
from automodel.data.vlm import ImageTextChatDataset


def _row(image: str, question: str = "What is in the picture?", answer: str = "A red square.") -> dict:
    return {"messages": [image_turn(image, question), text_turn("assistant", answer)]}


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch) -> Path:
    """A data folder with images/red.png and images/blue.png, and a working directory elsewhere."""
    write_png(tmp_path / "data" / "images" / "red.png", (255, 0, 0))
    write_png(tmp_path / "data" / "images" / "blue.png", (0, 0, 255))
    monkeypatch.chdir(tmp_path)
    return tmp_path / "data"


def _color(item: dict) -> tuple[int, int, int]:
    image = item["messages"][0]["content"][0]["image"]
    assert isinstance(image, Image.Image) and image.mode == "RGB"
    return image.getpixel((0, 0))


def test_relative_image_paths_start_from_the_data_files_folder(data_dir: Path) -> None:
    path = write_jsonl(data_dir / "train.jsonl", [_row("images/red.png"), _row("images/blue.png")])
    dataset = ImageTextChatDataset(path)
    assert [_color(item) for item in dataset] == [(255, 0, 0), (0, 0, 255)]
    assert dataset[0]["messages"][1] == text_turn("assistant", "A red square.")


def test_image_root_is_where_relative_paths_start_instead(data_dir: Path, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "elsewhere.jsonl", [_row("red.png")])
    assert _color(ImageTextChatDataset(path, image_root=data_dir / "images")[0]) == (255, 0, 0)


def test_string_content_and_image_url_parts_are_normalized_to_parts(data_dir: Path) -> None:
    image_url = {"type": "image_url", "image_url": {"url": str(data_dir / "images" / "blue.png")}}
    messages = [
        {"role": "system", "content": [{"type": "text", "text": "You are a helpful assistant."}]},
        {"role": "user", "content": [image_url, {"type": "text", "text": "Describe the image."}]},
        text_turn("assistant", "Two blue circles."),
    ]
    dataset = ImageTextChatDataset(write_jsonl(data_dir / "train.jsonl", [{"messages": messages}]))
    system, user, _ = dataset[0]["messages"]
    assert system == text_turn("system", "You are a helpful assistant.")
    assert user["content"][0]["image"].getpixel((0, 0)) == (0, 0, 255)
    assert user["content"][1] == {"type": "text", "text": "Describe the image."}


def test_a_missing_image_is_a_data_error_naming_the_file_and_row(data_dir: Path) -> None:
    path = write_jsonl(data_dir / "train.jsonl", [_row("images/red.png"), _row("images/gone.png")])
    with pytest.raises(DataError, match=r"train.jsonl: row 1: image file .*images/gone.png does not exist"):
        ImageTextChatDataset(path)


def test_an_unreadable_image_is_a_data_error_naming_the_file_and_row(data_dir: Path) -> None:
    (data_dir / "images" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    path = write_jsonl(data_dir / "train.jsonl", [_row("images/broken.png")])
    with pytest.raises(DataError, match=r"row 0: image .*broken.png cannot be read.*skip_bad_samples=True"):
        ImageTextChatDataset(path)


def test_skip_bad_samples_skips_missing_and_unreadable_images_and_counts_them(data_dir: Path, caplog) -> None:
    (data_dir / "images" / "broken.png").write_bytes(b"GIF89a truncated")
    rows = [_row("images/red.png"), _row("images/gone.png"), _row("images/broken.png"), _row("images/blue.png")]
    with caplog.at_level(logging.WARNING):
        dataset = ImageTextChatDataset(write_jsonl(data_dir / "train.jsonl", rows), skip_bad_samples=True)
    assert dataset.skipped_samples == 2
    assert [_color(item) for item in dataset] == [(255, 0, 0), (0, 0, 255)]
    assert [r.message for r in caplog.records].count(
        f"{data_dir / 'train.jsonl'}: skipped 2 of 4 samples with a missing or unreadable image"
    ) == 1


def test_an_image_url_is_refused_while_offline_naming_the_row_and_url(data_dir: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    url = "https://example.com/cat.png"
    path = write_jsonl(data_dir / "train.jsonl", [_row("images/red.png"), _row(url)])
    with pytest.raises(DataError, match=r"row 1: image https://example.com/cat.png is a URL.*download the images"):
        ImageTextChatDataset(path, skip_bad_samples=True)


def test_samples_longer_than_max_length_are_dropped_and_counted(data_dir: Path, caplog) -> None:
    processor = build_processor()
    rows = [_row("images/red.png"), _row("images/blue.png", answer="There are three shapes on a white background.")]
    path = write_jsonl(data_dir / "train.jsonl", rows)
    lengths = [
        len(processor.apply_chat_template(item["messages"], tokenize=True, return_dict=True)["input_ids"][0])
        for item in ImageTextChatDataset(path)
    ]
    with caplog.at_level(logging.WARNING):
        dataset = ImageTextChatDataset(path, processor=processor, max_length=min(lengths))
    assert (len(dataset), dataset.too_long_samples) == (1, 1)
    shortest, longest = min(lengths), max(lengths)
    assert f"dropped 1 of 2 samples longer than max_length={shortest} tokens (longest {longest})" in caplog.text
    assert len(ImageTextChatDataset(path, processor=processor, max_length=max(lengths))) == 2


def test_max_length_without_a_processor_is_a_data_error(data_dir: Path) -> None:
    path = write_jsonl(data_dir / "train.jsonl", [_row("images/red.png")])
    with pytest.raises(DataError, match=r"max_length=64 needs .* a processor.*pass processor="):
        ImageTextChatDataset(path, max_length=64)


def test_image_parts_without_a_value_take_the_rows_images_column_in_order(tmp_path: Path) -> None:
    red, blue = (Image.new("RGB", (12, 10), color) for color in [(255, 0, 0), (0, 0, 255)])
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": "Describe."}]},
        text_turn("assistant", "A red square, then two blue circles."),
    ]
    rows = datasets.Dataset.from_dict(
        {"messages": [messages], "images": [[red, blue]]},
    ).cast_column("images", datasets.Sequence(datasets.Image()))
    rows.save_to_disk(tmp_path / "saved")
    user = ImageTextChatDataset(tmp_path / "saved")[0]["messages"][0]
    assert [part["image"].getpixel((0, 0)) for part in user["content"][:2]] == [(255, 0, 0), (0, 0, 255)]


def test_rows_without_assistant_text_are_dropped_and_counted(data_dir: Path, caplog) -> None:
    rows = [_row("images/red.png"), {"messages": [image_turn("images/blue.png", "And this?")]}]
    with caplog.at_level(logging.WARNING):
        assert len(ImageTextChatDataset(write_jsonl(data_dir / "train.jsonl", rows))) == 1
    assert "dropped 1 of 2 samples with no assistant text" in caplog.text


def test_a_dataset_without_a_messages_column_lists_its_columns(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "wrong.jsonl", [{"conversation": "hi", "image": "a.png"}])
    with pytest.raises(DataError, match=r"wrong.jsonl: .*'messages'.*its columns are conversation, image"):
        ImageTextChatDataset(path)


def test_a_content_part_of_unknown_type_names_the_row(data_dir: Path) -> None:
    messages = [{"role": "user", "content": [{"type": "audio", "text": None}]}, text_turn("assistant", "Hi.")]
    path = write_jsonl(data_dir / "train.jsonl", [{"messages": messages}])
    with pytest.raises(DataError, match=r"row 0: cannot read content part .*'audio'"):
        ImageTextChatDataset(path)
