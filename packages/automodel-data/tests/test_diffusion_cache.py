"""The latent cache reads back what direct encoding gives, resumes, splits over ranks, refuses other fingerprints."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from automodel.data import DataError, build_dataloader
from automodel.data.diffusion import (
    ImageCaptionDataset,
    LatentCacheDataset,
    collate_image_captions,
    collate_latents,
    finalize_latent_cache,
    write_latent_cache,
)

SIZES = [(32, 16), (16, 32), (24, 24), (40, 20), (20, 40), (16, 16), (36, 18), (18, 36), (30, 30), (44, 22)]
FINGERPRINT = {"vae": "tiny-vae@1", "text_encoder": "tiny-te@1", "resolution": 16}


def _dataset(folder: Path) -> ImageCaptionDataset:
    """Ten noise images in three buckets (wide, tall, square), written once per folder."""
    if not (folder / "metadata.jsonl").is_file():
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for number, (width, height) in enumerate(SIZES):
            pixels = np.random.default_rng(number).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{number}.png")
            rows.append(json.dumps({"file_name": f"{number}.png", "text": f"caption number {number}"}))
        (folder / "metadata.jsonl").write_text("\n".join(rows))
    return ImageCaptionDataset(folder, buckets=[[8, 8], [8, 16], [16, 8]], crop="random", random_flip=0.5)


class Encoder:
    """A stand-in for the VAE and text encoders that records the samples of each call."""

    def __init__(self, fail_after_calls: int | None = None) -> None:
        self.calls: list[list[int]] = []
        self.fail_after_calls = fail_after_calls

    def __call__(self, batch: dict) -> dict[str, torch.Tensor]:
        if self.fail_after_calls is not None and len(self.calls) == self.fail_after_calls:
            raise RuntimeError("the encoder crashed")
        self.calls.append(batch["indices"].tolist())
        codes = [[float(len(c)), float(sum(map(ord, c)) % 97)] for c in batch["captions"]]
        return {
            "latents": F.avg_pool2d(batch["pixel_values"], 2).to(torch.bfloat16),
            "pooled_prompt_embeds": torch.tensor(codes),
            "prompt_embeds": torch.tensor(codes)[:, None, :].expand(-1, 3, -1),  # not contiguous, as views often are
        }


def _contents(cache: LatentCacheDataset) -> list[dict]:
    return [cache[i] for i in range(len(cache))]


def _assert_same(left: list[dict], right: list[dict]) -> None:
    assert len(left) == len(right)
    for a, b in zip(left, right, strict=True):
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) if k != "index" else a[k] == b[k] for k in a)


def test_the_cache_reads_back_what_encoding_each_sample_gives(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "images")
    encode = Encoder()
    null = {"prompt_embeds": torch.zeros(3, 2), "pooled_prompt_embeds": torch.zeros(2)}
    out = write_latent_cache(
        dataset,
        encode,
        tmp_path / "cache",
        fingerprint=FINGERPRINT,
        batch_size=2,
        samples_per_shard=4,
        null_conditioning=null,
    )
    # Batches hold one bucket each, in index order within the bucket.
    assert all(len({dataset.bucket_ids[i] for i in call}) == 1 and call == sorted(call) for call in encode.calls)
    assert sorted(i for call in encode.calls for i in call) == list(range(10))
    files = sorted(p.name for p in out.iterdir())
    assert files == ["index.json", "null_conditioning.safetensors"] + [f"shard-0000{i}.safetensors" for i in range(3)]
    index = json.loads((out / "index.json").read_text())
    assert index["format"] == 1 and index["num_samples"] == 10 and index["fingerprint"] == FINGERPRINT
    assert index["captions"] == dataset.captions and index["bucket_ids"] == dataset.bucket_ids
    assert index["keys"] == ["latents", "pooled_prompt_embeds", "prompt_embeds"]
    assert [len(s["indices"]) for s in index["shards"]] == [4, 4, 2]

    cache = LatentCacheDataset(
        out, expected_fingerprint={"resolution": 16, "vae": "tiny-vae@1", "text_encoder": "tiny-te@1"}
    )
    assert len(cache) == 10 and cache.bucket_ids == dataset.bucket_ids and cache.captions == dataset.captions
    assert cache.fingerprint == FINGERPRINT
    assert all(torch.equal(cache.null_conditioning[k], v) for k, v in null.items())
    for index in range(10):
        direct = Encoder()(collate_image_captions([dataset[index]]))
        item = cache[index]
        assert item["index"] == index
        for key, value in direct.items():
            assert item[key].dtype == value.dtype and torch.equal(item[key], value[0]), (index, key)


def test_an_interrupted_run_resumes_encoding_only_the_missing_shards(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "images")
    straight = write_latent_cache(
        dataset, Encoder(), tmp_path / "straight", fingerprint=FINGERPRINT, samples_per_shard=3
    )
    crashing = Encoder(fail_after_calls=2)  # one call per shard with batch_size=3: two shards get written
    with pytest.raises(RuntimeError, match="crashed"):
        write_latent_cache(
            dataset, crashing, tmp_path / "cache", fingerprint=FINGERPRINT, batch_size=3, samples_per_shard=3
        )
    written = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert written == ["shard-00000.safetensors", "shard-00001.safetensors"]  # no index, no temporary file
    with pytest.raises(DataError, match=r"is incomplete \(it has no index.json\).*automodel preprocess diffusion"):
        LatentCacheDataset(tmp_path / "cache")
    rerun = Encoder()
    out = write_latent_cache(
        dataset, rerun, tmp_path / "cache", fingerprint=FINGERPRINT, batch_size=3, samples_per_shard=3
    )
    done_before = {i for call in crashing.calls for i in call}
    assert {i for call in rerun.calls for i in call} == set(range(10)) - done_before
    _assert_same(_contents(LatentCacheDataset(out)), _contents(LatentCacheDataset(straight)))
    again = Encoder()
    write_latent_cache(dataset, again, out, fingerprint=FINGERPRINT, batch_size=3, samples_per_shard=3)
    assert again.calls == []  # a complete cache is not encoded again


def test_a_folder_holding_another_cache_is_refused(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "images")
    other = {**FINGERPRINT, "vae": "other-vae@2"}
    partial = tmp_path / "partial"
    with pytest.raises(RuntimeError):
        write_latent_cache(
            dataset, Encoder(fail_after_calls=1), partial, fingerprint=FINGERPRINT, batch_size=3, samples_per_shard=3
        )
    assert sorted(p.name for p in partial.iterdir()) == ["shard-00000.safetensors"]
    with pytest.raises(DataError, match=r"holds a latent cache of another model or data.*vae: the cache has"):
        write_latent_cache(dataset, Encoder(), partial, fingerprint=other, batch_size=3, samples_per_shard=3)
    complete = write_latent_cache(dataset, Encoder(), tmp_path / "complete", fingerprint=FINGERPRINT)
    with pytest.raises(DataError, match=r"index\.json.*remove the folder or choose another cache directory"):
        write_latent_cache(dataset, Encoder(), complete, fingerprint=other)
    with pytest.raises(DataError, match="holds other samples than this run"):
        write_latent_cache(dataset, Encoder(), complete, fingerprint=FINGERPRINT, samples_per_shard=4)


def test_loading_a_cache_checks_the_fingerprint_and_names_the_keys_that_differ(tmp_path: Path) -> None:
    out = write_latent_cache(_dataset(tmp_path / "images"), Encoder(), tmp_path / "cache", fingerprint=FINGERPRINT)
    expected = {**FINGERPRINT, "vae": "big-vae@3", "scaling_factor": 0.13}
    with pytest.raises(DataError) as raised:
        LatentCacheDataset(out, expected_fingerprint=expected)
    message = str(raised.value)
    assert "scaling_factor: the cache has '(none)', expected 0.13" in message
    assert "vae: the cache has 'tiny-vae@1', expected 'big-vae@3'" in message
    assert "text_encoder" not in message and "automodel preprocess diffusion" in message
    with pytest.raises(DataError, match=r"latent cache .*nowhere does not exist.*automodel preprocess diffusion"):
        LatentCacheDataset(tmp_path / "nowhere")


def test_two_ranks_write_alternate_shards_and_finalize_completes_the_cache(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "images")
    straight = write_latent_cache(
        dataset, Encoder(), tmp_path / "straight", fingerprint=FINGERPRINT, samples_per_shard=3
    )
    shared = tmp_path / "shared"
    write_latent_cache(dataset, Encoder(), shared, fingerprint=FINGERPRINT, samples_per_shard=3, dp_rank=1, dp_size=2)
    assert sorted(p.name for p in shared.iterdir()) == ["shard-00001.safetensors", "shard-00003.safetensors"]
    with pytest.raises(DataError, match=r"lacks 2 of its 4 shards \(shard-00000.safetensors, shard-00002"):
        finalize_latent_cache(shared)
    write_latent_cache(dataset, Encoder(), shared, fingerprint=FINGERPRINT, samples_per_shard=3, dp_rank=0, dp_size=2)
    assert not (shared / "index.json").exists()
    assert finalize_latent_cache(shared) == shared / "index.json"
    assert (shared / "index.json").read_text() == (straight / "index.json").read_text()
    _assert_same(_contents(LatentCacheDataset(shared)), _contents(LatentCacheDataset(straight)))


def test_the_cache_loads_in_bucket_batches_also_in_worker_processes(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "images")
    cache = LatentCacheDataset(write_latent_cache(dataset, Encoder(), tmp_path / "cache", fingerprint=FINGERPRINT))
    cache[0]  # opens a shard before the worker is started
    loader = build_dataloader(cache, 2, collate_latents, drop_last=False, num_workers=1)
    batches = list(loader)
    assert sorted(i for batch in batches for i in batch["indices"].tolist()) == list(range(10))
    for batch in batches:
        assert batch["latents"].shape[1:] in {(3, 4, 4), (3, 4, 8), (3, 8, 4)}
        assert batch["prompt_embeds"].shape == (len(batch["indices"]), 3, 2)
    with pytest.raises(DataError, match="a batch holds latents of 3 shapes"):
        collate_latents([cache[i] for i in range(10)])


def test_encode_must_return_one_row_per_sample(tmp_path: Path) -> None:
    dataset = _dataset(tmp_path / "images")
    with pytest.raises(DataError, match=r"encode returned latents of shape \[1, 4\] for a batch of 2"):
        write_latent_cache(
            dataset, lambda batch: {"latents": torch.zeros(1, 4)}, tmp_path / "c", fingerprint={}, batch_size=2
        )
