"""ImageCaptionDataset: buckets by aspect ratio, crops and flips fixed per index, bad rows named by file and line."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

import automodel.data.diffusion as diffusion
from automodel.data import DataError
from automodel.data.diffusion import ImageCaptionDataset, closest_bucket, collate_image_captions, normalize_buckets

BUCKETS = [[16, 16], [12, 24], [24, 12]]  # square, wide (2:1), tall (1:2)


def _noise(width: int, height: int, seed: int, mode: str = "RGB") -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels).convert(mode)


def _folder(tmp_path: Path, images: list[Image.Image], lines: list[str] | None = None) -> Path:
    """Save images as 0.png, 1.png, ... with a metadata.jsonl (``lines`` replaces the generated rows)."""
    for number, image in enumerate(images):
        image.save(tmp_path / f"{number}.png")
    rows = [json.dumps({"file_name": f"{n}.png", "text": f"picture {n}"}) for n in range(len(images))]
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines if lines is not None else rows) + "\n")
    return tmp_path


def test_each_image_goes_to_the_bucket_closest_to_its_aspect_ratio_and_is_fitted_to_it(tmp_path: Path) -> None:
    sizes = [(64, 32), (32, 64), (40, 40), (60, 40), (40, 60), (41, 39)]  # (width, height)
    dataset = ImageCaptionDataset(
        _folder(tmp_path, [_noise(w, h, i) for i, (w, h) in enumerate(sizes)]), buckets=BUCKETS
    )
    assert dataset.buckets == [(16, 16), (12, 24), (24, 12)]
    assert dataset.bucket_ids == [1, 2, 0, 1, 2, 0]  # 3:2 is nearer 2:1 than 1:1 on a log scale
    for index, bucket in enumerate(dataset.bucket_ids):
        item = dataset[index]
        assert item["pixel_values"].shape == (3, *dataset.buckets[bucket])
        assert item["pixel_values"].dtype == torch.float32
        assert item["pixel_values"].min() >= -1.0 and item["pixel_values"].max() <= 1.0
        assert item["caption"] == f"picture {index}"
        assert item["original_size"] == (sizes[index][1], sizes[index][0])
    assert closest_bucket(30, 10, normalize_buckets(8, BUCKETS)) == 1
    assert normalize_buckets(32, None) == [(32, 32)]
    square = ImageCaptionDataset(tmp_path, resolution=8)
    assert square.bucket_ids == [0] * 6 and square[0]["pixel_values"].shape == (3, 8, 8)


def test_an_image_is_resized_to_cover_its_bucket_and_center_cropped(tmp_path: Path) -> None:
    halves = np.zeros((32, 64, 3), dtype=np.uint8)
    halves[:, 32:] = 255  # left half black, right half white
    dataset = ImageCaptionDataset(_folder(tmp_path, [Image.fromarray(halves)]), resolution=16)
    item = dataset[0]
    # 64x32 covers 16x16 at 32x16; the center crop keeps columns 8..24, the boundary in the middle.
    assert item["crop_top_left"] == (0, 8)
    assert torch.allclose(item["pixel_values"][:, :, :6], torch.tensor(-1.0), atol=0.02)
    assert torch.allclose(item["pixel_values"][:, :, 10:], torch.tensor(1.0), atol=0.02)


def test_random_crops_and_flips_are_fixed_per_seed_and_index_and_differ_across_indices(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [_noise(64, 16, i) for i in range(8)])

    def build(seed: int) -> ImageCaptionDataset:
        return ImageCaptionDataset(folder, resolution=16, crop="random", random_flip=0.5, seed=seed)

    first = build(seed=3)
    np.random.seed(1)
    torch.manual_seed(1)
    items = [first[i] for i in range(8)]
    np.random.seed(2)  # the global generators play no part
    torch.manual_seed(2)
    again = build(seed=3)
    for index in reversed(range(8)):  # nor does the order samples are read in
        assert torch.equal(again[index]["pixel_values"], items[index]["pixel_values"])
        assert again[index]["crop_top_left"] == items[index]["crop_top_left"]
    offsets = [item["crop_top_left"][1] for item in items]
    assert len(set(offsets)) > 3 and all(0 <= x <= 48 for x in offsets)
    assert [build(seed=4)[i]["crop_top_left"][1] for i in range(8)] != offsets
    # The crop is the resized (and possibly mirrored) image's window at crop_top_left.
    windows = []
    for index, item in enumerate(items):
        resized = Image.open(folder / f"{index}.png").convert("RGB").resize((64, 16), Image.Resampling.BICUBIC)
        top, left = item["crop_top_left"]
        plain = torch.from_numpy(np.array(resized.crop((left, top, left + 16, top + 16)))).permute(2, 0, 1)
        mirrored = resized.transpose(Image.Transpose.FLIP_LEFT_RIGHT).crop((left, top, left + 16, top + 16))
        expected = [plain, torch.from_numpy(np.array(mirrored)).permute(2, 0, 1)]
        got = ((item["pixel_values"] + 1) * 127.5).round().to(torch.uint8)
        windows += [
            name for name, window in zip(("plain", "mirrored"), expected, strict=True) if torch.equal(got, window)
        ]
    assert len(windows) == 8 and set(windows) == {"plain", "mirrored"}  # random_flip=0.5 flips some


def test_random_flip_mirrors_the_image(tmp_path: Path) -> None:
    folder = _folder(tmp_path, [_noise(16, 16, 0)])
    plain = ImageCaptionDataset(folder, resolution=16)[0]["pixel_values"]
    flipped = ImageCaptionDataset(folder, resolution=16, random_flip=1.0)[0]["pixel_values"]
    assert torch.equal(flipped, plain.flip(2))
    assert not torch.equal(flipped, plain)


def test_any_image_mode_becomes_rgb_with_transparency_over_white(tmp_path: Path) -> None:
    transparent = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    images = [Image.new("L", (8, 8), 0), transparent, _noise(8, 8, 1, mode="P"), _noise(8, 8, 2, mode="CMYK")]
    images[3].save(tmp_path / "3.jpg")
    lines = [json.dumps({"file_name": f"{n}.{'jpg' if n == 3 else 'png'}", "text": "x"}) for n in range(4)]
    for number, image in enumerate(images[:3]):
        image.save(tmp_path / f"{number}.png")
    (tmp_path / "metadata.jsonl").write_text("\n".join(lines))
    dataset = ImageCaptionDataset(tmp_path, resolution=8)
    assert all(dataset[i]["pixel_values"].shape == (3, 8, 8) for i in range(4))
    assert torch.equal(dataset[0]["pixel_values"], torch.full((3, 8, 8), -1.0))
    assert torch.equal(dataset[1]["pixel_values"], torch.full((3, 8, 8), 1.0))


def test_the_exif_orientation_turns_the_image_upright_before_bucketing(tmp_path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 64 wide and 32 high, shown rotated: 32 wide and 64 high
    _noise(64, 32, 0).save(tmp_path / "0.jpg", exif=exif)
    (tmp_path / "metadata.jsonl").write_text(json.dumps({"file_name": "0.jpg", "text": "a tall photo"}))
    dataset = ImageCaptionDataset(tmp_path, buckets=BUCKETS)
    assert dataset.bucket_ids == [2]
    assert dataset[0]["pixel_values"].shape == (3, 24, 12) and dataset[0]["original_size"] == (64, 32)


BAD_ROWS = {
    "no caption": ({"file_name": "0.png"}, "has no column 'text'"),
    "empty caption": ({"file_name": "0.png", "text": "  "}, "an empty caption"),
    "no image": ({"text": "a caption"}, "names no image in column 'file_name'"),
    "missing file": ({"file_name": "nope.png", "text": "a caption"}, "nope.png does not exist"),
    "not an image": ({"file_name": "junk.png", "text": "a caption"}, "junk.png cannot be opened"),
}


@pytest.mark.parametrize("case", list(BAD_ROWS))
def test_a_bad_row_is_an_error_naming_the_metadata_file_and_line(tmp_path: Path, case: str) -> None:
    row, problem = BAD_ROWS[case]
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    good = json.dumps({"file_name": "0.png", "text": "fine"})
    _folder(tmp_path, [_noise(8, 8, 0)], lines=[good, "", good, json.dumps(row)])
    with pytest.raises(DataError) as raised:
        ImageCaptionDataset(tmp_path, resolution=8)
    message = str(raised.value)
    assert f"{tmp_path / 'metadata.jsonl'} line 4" in message  # blank lines count
    assert problem in message
    assert "skip_bad_samples: true" in message


def test_skip_bad_samples_leaves_bad_rows_out_and_counts_them(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"not a png at all")
    good = [json.dumps({"file_name": f"{n}.png", "text": f"picture {n}"}) for n in range(2)]
    bad = [json.dumps(row) for row, _ in BAD_ROWS.values()]
    _folder(tmp_path, [_noise(8, 8, 0), _noise(8, 8, 1)], lines=[good[0], *bad, good[1]])
    dataset = ImageCaptionDataset(tmp_path, resolution=8, skip_bad_samples=True)
    assert len(dataset) == 2 and dataset.captions == ["picture 0", "picture 1"]
    assert dataset[1]["caption"] == "picture 1"
    assert dataset.skipped == 5
    assert [e.split(" line ")[1].split(" ")[0] for e in dataset.skipped_examples] == ["2", "3", "4", "5", "6"]
    _folder(tmp_path, [], lines=bad)
    with pytest.raises(DataError, match="no usable sample is left of 5 rows"):
        ImageCaptionDataset(tmp_path, resolution=8, skip_bad_samples=True)


def test_an_image_whose_header_reads_but_whose_pixels_do_not_fails_when_read_naming_it(tmp_path: Path) -> None:
    _folder(tmp_path, [_noise(32, 32, 0)])
    data = (tmp_path / "0.png").read_bytes()
    (tmp_path / "0.png").write_bytes(data[: len(data) // 2])
    dataset = ImageCaptionDataset(tmp_path, resolution=8, skip_bad_samples=True)
    assert dataset.skipped == 0
    with pytest.raises(DataError, match=r"metadata.jsonl line 1: image .*0\.png cannot be decoded"):
        dataset[0]


def test_missing_metadata_and_a_local_split_other_than_train_are_errors(tmp_path: Path) -> None:
    _noise(8, 8, 0).save(tmp_path / "0.png")
    with pytest.raises(DataError, match=r"no metadata\.jsonl or metadata\.csv"):
        ImageCaptionDataset(tmp_path)
    _folder(tmp_path, [_noise(8, 8, 0)])
    with pytest.raises(DataError, match="one split, `train`"):
        ImageCaptionDataset(tmp_path, split="test")
    with pytest.raises(DataError, match="crop must be one of center, random"):
        ImageCaptionDataset(tmp_path, crop="top")
    with pytest.raises(DataError, match=r"bucket \[16\] is not a \[height, width\] pair"):
        ImageCaptionDataset(tmp_path, buckets=[[16]])
    with pytest.raises(DataError, match="could not be loaded from the Hugging Face Hub"):
        ImageCaptionDataset("no-such-user/no-such-image-dataset")


def test_csv_metadata_with_other_column_names_and_a_limit(tmp_path: Path) -> None:
    for number in range(3):
        _noise(8, 8, number).save(tmp_path / f"{number}.png")
    (tmp_path / "metadata.csv").write_text('path,prompt\n0.png,"a, b"\n1.png,\n2.png,c\n')
    with pytest.raises(DataError, match=r"metadata.csv line 3 has an empty caption"):
        ImageCaptionDataset(tmp_path, image_column="path", caption_column="prompt")
    dataset = ImageCaptionDataset(tmp_path, image_column="path", caption_column="prompt", limit=1)
    assert dataset.captions == ["a, b"]
    with pytest.raises(DataError, match=r"metadata\.csv has no column text"):
        ImageCaptionDataset(tmp_path, image_column="path")


def test_a_saved_dataset_with_an_image_column_is_read_too(tmp_path: Path) -> None:
    images = [_noise(16, 8, 0), _noise(8, 16, 1)]
    rows = datasets.Dataset.from_dict({"image": images, "caption": ["wide", "tall"]})
    rows.cast_column("image", datasets.Image()).save_to_disk(str(tmp_path / "saved"))
    dataset = ImageCaptionDataset(tmp_path / "saved", image_column="image", caption_column="caption", buckets=BUCKETS)
    assert dataset.bucket_ids == [1, 2] and dataset.captions == ["wide", "tall"]
    assert dataset[1]["pixel_values"].shape == (3, 24, 12)


def test_collate_stacks_one_bucket_and_refuses_mixed_sizes(tmp_path: Path) -> None:
    dataset = ImageCaptionDataset(
        _folder(tmp_path, [_noise(64, 32, 0), _noise(60, 30, 1), _noise(8, 8, 2)]), buckets=BUCKETS
    )
    batch = collate_image_captions([dataset[0], dataset[1]])
    assert batch["indices"].tolist() == [0, 1]
    assert batch["pixel_values"].shape == (2, 3, 12, 24)
    assert batch["captions"] == ["picture 0", "picture 1"]
    assert batch["original_sizes"].tolist() == [[32, 64], [30, 60]]
    assert batch["crop_top_lefts"].shape == (2, 2)
    with pytest.raises(DataError, match=r"2 sizes \(12x24, 16x16\).*one bucket"):
        collate_image_captions([dataset[0], dataset[2]])


def test_every_public_name_is_documented_and_typed() -> None:
    for name in diffusion.__all__:
        obj = getattr(diffusion, name)
        assert inspect.getdoc(obj), name
        if inspect.isfunction(obj):
            signature = inspect.signature(obj)
            assert signature.return_annotation is not inspect.Signature.empty, name
            assert all(p.annotation is not inspect.Parameter.empty for p in signature.parameters.values()), name
