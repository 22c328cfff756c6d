"""Writing a latent cache: every sample encoded once (VAE latents, text embeddings), stored in safetensors shards.

The samples are ordered by bucket, then by index, and cut into shards of
``samples_per_shard``; shard ``i`` is encoded by data-parallel rank ``i % dp_size``.
Every file is written under a temporary name and renamed when complete, and ``index.json``
is written last, so an interrupted run leaves whole shards only, and running again
encodes just the missing ones. The file layout is described in ``cache_files``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from automodel.data.diffusion.cache_files import (
    FORMAT,
    INDEX_FILE,
    NULL_CONDITIONING_FILE,
    PREPROCESS_HINT,
    SHARD_GLOB,
    canonical_fingerprint,
    read_description,
    read_index,
    refuse_other_cache,
    save_atomic,
    shard_file,
    write_json_atomic,
)
from automodel.data.diffusion.image_caption import collate_image_captions
from automodel.data.errors import DataError

Encode = Callable[[dict[str, Any]], dict[str, torch.Tensor]]


def write_latent_cache(
    dataset: Dataset,
    encode: Encode,
    out_dir: str | os.PathLike[str],
    *,
    fingerprint: dict[str, Any],
    batch_size: int = 16,
    samples_per_shard: int = 1024,
    null_conditioning: dict[str, torch.Tensor] | None = None,
    dp_rank: int = 0,
    dp_size: int = 1,
    num_workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Encode every sample of an image-caption dataset once and store the results in ``out_dir``.

    Shards already in ``out_dir`` from an earlier run with the same fingerprint are kept,
    not encoded again. With ``dp_size > 1`` each rank writes its shards only; once all ranks
    are done (the caller's barrier), one rank calls ``finalize_latent_cache(out_dir)``.

    Args:
        dataset: an ``ImageCaptionDataset`` (or any dataset whose items
            ``collate_image_captions`` takes and that has ``bucket_ids``, or one bucket).
        encode: called under ``torch.no_grad()`` with a batch from ``collate_image_captions``
            (all of one bucket); returns a dict of tensors whose first dimension is the
            batch, e.g. ``latents``, ``prompt_embeds``, ``pooled_prompt_embeds``.
        out_dir: the cache folder (created when missing).
        fingerprint: JSON values naming what the cache depends on (VAE and text encoders,
            their revisions, the dataset, resolution, buckets); loading the cache checks it.
        batch_size: samples per ``encode`` call.
        samples_per_shard: samples per shard file.
        null_conditioning: the conditioning of the empty caption (for caption dropout),
            saved by rank 0 to ``null_conditioning.safetensors``.
        dp_rank: this rank's index among the data-parallel ranks.
        dp_size: the number of data-parallel ranks.
        num_workers: data loader processes decoding images (0: in this process).
        progress: called with (samples done, samples to do) on this rank, at the start and after each batch.

    Returns:
        ``out_dir`` as a Path; with ``dp_size == 1`` it holds the complete cache.

    Raises:
        DataError: ``out_dir`` holds a cache of another fingerprint or sharding, an argument
            is out of range, or ``encode`` returns something else than a tensor per sample per key.
    """
    for argument, value in (("batch_size", batch_size), ("samples_per_shard", samples_per_shard), ("dp_size", dp_size)):
        if value < 1:
            raise DataError(f"{argument} must be positive, not {value}")
    if not 0 <= dp_rank < dp_size:
        raise DataError(f"dp_rank {dp_rank} is not in [0, dp_size={dp_size})")
    folder = Path(out_dir).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    expected = canonical_fingerprint(fingerprint)
    if (folder / INDEX_FILE).is_file():
        refuse_other_cache(folder, read_index(folder)["fingerprint"], expected, INDEX_FILE)
    bucket_ids = [int(b) for b in getattr(dataset, "bucket_ids", [0] * len(dataset))]
    plan = _CachePlan(folder, expected, bucket_ids, plan_shards(bucket_ids, samples_per_shard))
    if null_conditioning is not None and dp_rank == 0:
        _write_null_conditioning(folder, null_conditioning, expected)
    mine = range(dp_rank, len(plan.shards), dp_size)
    todo = [shard for shard in mine if not plan.is_done(shard)]
    total = sum(len(plan.shards[s]) for s in mine)
    done = total - sum(len(plan.shards[s]) for s in todo)

    def advance(samples: int) -> None:
        nonlocal done
        done += samples
        if progress is not None:
            progress(done, total)

    advance(0)
    _encode_shards(dataset, encode, plan, todo, batch_size, num_workers, advance)
    if dp_size == 1:
        finalize_latent_cache(folder)
    return folder


def finalize_latent_cache(out_dir: str | os.PathLike[str]) -> Path:
    """Check that every shard of a cache is written and write its ``index.json``, which marks it complete.

    ``write_latent_cache`` calls it itself when ``dp_size == 1``; with several ranks, call it
    on one rank after all of them have returned from ``write_latent_cache``.

    Returns:
        The path of ``index.json``: ``{"format": 1, "fingerprint", "num_samples", "shards":
        [{"file", "indices"}], "bucket_ids", "captions", "keys", "null_conditioning"}``,
        ``bucket_ids`` and ``captions`` listed by sample index, ``null_conditioning`` the
        file name or null.

    Raises:
        DataError: no shard, a missing shard, or shards or a null conditioning of different fingerprints.
    """
    folder = Path(out_dir).expanduser()
    found = sorted(folder.glob(SHARD_GLOB))
    if not found:
        raise DataError(f"{folder} holds no latent cache shard", hint=PREPROCESS_HINT)
    first = read_description(found[0])
    fingerprint, num_samples, num_shards = first["fingerprint"], first["num_samples"], first["num_shards"]
    missing = [shard_file(s) for s in range(num_shards) if not (folder / shard_file(s)).is_file()]
    if missing:
        raise DataError(
            f"{folder} lacks {len(missing)} of its {num_shards} shards ({', '.join(missing[:5])})",
            hint="run write_latent_cache on every data-parallel rank (it resumes) before finalize_latent_cache",
        )
    shards = []
    bucket_ids: list[int] = [0] * num_samples
    captions: list[str] = [""] * num_samples
    for shard in range(num_shards):
        description = read_description(folder / shard_file(shard))
        refuse_other_cache(folder, description["fingerprint"], fingerprint, f"{shard_file(shard)} and {found[0].name}")
        if (description["num_shards"], description["keys"]) != (num_shards, first["keys"]):
            raise DataError(
                f"{folder}: {shard_file(shard)} and {found[0].name} come from different runs (shard count or keys)",
                hint="remove the folder and run the preprocessing again",
            )
        shards.append({"file": shard_file(shard), "indices": description["indices"]})
        for index, bucket, caption in zip(
            description["indices"], description["bucket_ids"], description["captions"], strict=True
        ):
            bucket_ids[index], captions[index] = bucket, caption
    null_file = folder / NULL_CONDITIONING_FILE
    if null_file.is_file():
        refuse_other_cache(folder, read_description(null_file)["fingerprint"], fingerprint, NULL_CONDITIONING_FILE)
    index = {
        "format": FORMAT,
        "fingerprint": fingerprint,
        "num_samples": num_samples,
        "shards": shards,
        "bucket_ids": bucket_ids,
        "captions": captions,
        "keys": first["keys"],
        "null_conditioning": NULL_CONDITIONING_FILE if null_file.is_file() else None,
    }
    write_json_atomic(folder / INDEX_FILE, index)
    return folder / INDEX_FILE


@dataclass(frozen=True)
class _CachePlan:
    """Which samples go to which shard of a cache folder, and the description every shard carries."""

    folder: Path
    fingerprint: dict[str, Any]
    bucket_ids: list[int]
    shards: list[list[int]]

    def is_done(self, shard: int) -> bool:
        """Whether shard ``shard`` is already written, for this fingerprint and these samples.

        Raises:
            DataError: the shard on disk has another fingerprint or other samples.
        """
        path = self.folder / shard_file(shard)
        if not path.is_file():
            return False
        description = read_description(path)
        refuse_other_cache(self.folder, description["fingerprint"], self.fingerprint, path.name)
        if description["indices"] != self.shards[shard] or description["num_shards"] != len(self.shards):
            raise DataError(
                f"{path} holds other samples than this run puts in it (the dataset or samples_per_shard changed)",
                hint="remove the folder or choose another cache directory",
            )
        return True

    def save(self, shard: int, tensors: dict[str, torch.Tensor], captions: list[str], keys: list[str]) -> None:
        """Write shard ``shard`` atomically: its tensors and its description."""
        indices = self.shards[shard]
        description = {
            "format": FORMAT,
            "fingerprint": self.fingerprint,
            "num_shards": len(self.shards),
            "num_samples": len(self.bucket_ids),
            "shard": shard,
            "indices": indices,
            "bucket_ids": [self.bucket_ids[i] for i in indices],
            "captions": captions,
            "keys": keys,
        }
        save_atomic(tensors, self.folder / shard_file(shard), description)


def _encode_shards(
    dataset: Dataset,
    encode: Encode,
    plan: _CachePlan,
    todo: list[int],
    batch_size: int,
    num_workers: int,
    advance: Callable[[int], None],
) -> None:
    """Encode the shards ``todo`` batch by batch, saving each shard as soon as its last batch is encoded."""
    steps = [
        (shard, batch) for shard in todo for batch in bucket_batches(plan.shards[shard], plan.bucket_ids, batch_size)
    ]
    loader = DataLoader(
        dataset, batch_sampler=[batch for _, batch in steps], collate_fn=collate_image_captions, num_workers=num_workers
    )
    tensors: dict[str, torch.Tensor] = {}
    captions: list[str] = []
    keys: list[str] | None = None
    for step, batch in enumerate(loader):
        with torch.no_grad():
            outputs = encode(batch)
        keys = _check_outputs(outputs, len(batch["captions"]), keys)
        on_cpu = {key: outputs[key].detach().cpu() for key in keys}
        for row, index in enumerate(batch["indices"].tolist()):
            for key in keys:
                tensors[f"{index}.{key}"] = on_cpu[key][row].clone(memory_format=torch.contiguous_format)
        captions += batch["captions"]
        advance(len(batch["captions"]))
        shard = steps[step][0]
        if step + 1 == len(steps) or steps[step + 1][0] != shard:
            plan.save(shard, tensors, captions, keys)
            tensors, captions = {}, []


def _write_null_conditioning(folder: Path, tensors: dict[str, torch.Tensor], fingerprint: dict[str, Any]) -> None:
    """Save the empty caption's conditioning, refusing to replace one of another fingerprint."""
    path = folder / NULL_CONDITIONING_FILE
    if path.is_file():
        refuse_other_cache(folder, read_description(path)["fingerprint"], fingerprint, path.name)
    if not all(isinstance(v, torch.Tensor) for v in tensors.values()):
        raise DataError("null_conditioning must map names to tensors")
    copies = {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in tensors.items()}
    save_atomic(copies, path, {"format": FORMAT, "fingerprint": fingerprint})


def _check_outputs(outputs: Any, size: int, keys: list[str] | None) -> list[str]:
    """Check that ``encode`` returned a tensor with one row per sample for each key (the same keys each time).

    Returns:
        The keys, sorted.
    """
    if not isinstance(outputs, dict) or not outputs:
        raise DataError(f"encode must return a non-empty dict of tensors, not {type(outputs).__name__}")
    for key, value in outputs.items():
        if not isinstance(key, str) or key == "index":
            raise DataError(f"encode returned the key {key!r}; use string keys other than 'index'")
        if not isinstance(value, torch.Tensor) or value.dim() == 0 or value.shape[0] != size:
            shape = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise DataError(f"encode returned {key} of shape {shape} for a batch of {size}; return one row per sample")
    names = sorted(outputs)
    if keys is not None and names != keys:
        raise DataError(f"encode returned the keys {names} for one batch and {keys} for another; return the same keys")
    return names


def plan_shards(bucket_ids: Sequence[int], samples_per_shard: int) -> list[list[int]]:
    """Order the sample indices by bucket, then index, and cut them into shards of ``samples_per_shard``."""
    order = sorted(range(len(bucket_ids)), key=lambda i: (bucket_ids[i], i))
    return [order[start : start + samples_per_shard] for start in range(0, len(order), samples_per_shard)]


def bucket_batches(indices: Sequence[int], bucket_ids: Sequence[int], batch_size: int) -> list[list[int]]:
    """Cut indices (grouped by bucket) into batches of up to ``batch_size``, each of one bucket."""
    batches: list[list[int]] = []
    for index in indices:
        last = batches[-1] if batches else None
        if last is None or len(last) == batch_size or bucket_ids[last[0]] != bucket_ids[index]:
            batches.append([index])
        else:
            last.append(index)
    return batches
