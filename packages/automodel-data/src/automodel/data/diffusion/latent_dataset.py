"""Reading a latent cache written by ``write_latent_cache``: one item per sample, shards memory-mapped on demand."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch.utils.data import Dataset

from automodel.data.diffusion.cache_files import PREPROCESS_HINT, fingerprint_differences, read_index
from automodel.data.errors import DataError


class LatentCacheDataset(Dataset):
    """The samples of a latent cache; items are ``{"index": int, <key>: tensor, ...}``, one tensor per cached key.

    Shards are opened with ``safetensors.safe_open`` (memory-mapped) the first time one of
    their samples is read, and kept open; a copy sent to a loader worker opens its own.

    Attributes:
        path: the cache folder.
        fingerprint: what the cache was encoded with (``write_latent_cache``'s ``fingerprint``).
        keys: the cached keys, e.g. ``["latents", "pooled_prompt_embeds", "prompt_embeds"]``.
        bucket_ids: each sample's bucket; ``build_dataloader`` batches samples of one bucket together.
        captions: each sample's caption, for reference.
        null_conditioning: the empty caption's conditioning (a dict of tensors), or None.
    """

    def __init__(self, path: str | os.PathLike[str], *, expected_fingerprint: dict[str, Any] | None = None) -> None:
        """Read the cache's ``index.json`` and check its fingerprint.

        Args:
            path: the cache folder.
            expected_fingerprint: the fingerprint the training run would encode with; None skips the check.

        Raises:
            DataError: the cache is missing or incomplete (no ``index.json``), or its fingerprint
                differs from ``expected_fingerprint`` (the message lists the keys that differ).
        """
        self.path = Path(path).expanduser()
        index = read_index(self.path)
        self.fingerprint: dict[str, Any] = index["fingerprint"]
        if expected_fingerprint is not None:
            differences = fingerprint_differences(self.fingerprint, expected_fingerprint)
            if differences:
                raise DataError(
                    f"the latent cache {self.path} was encoded with another setup: {'; '.join(differences)}",
                    hint="run the preprocessing again for this model and data (automodel preprocess diffusion "
                    "-c cfg.yaml), into a new cache directory",
                )
        self.keys: list[str] = index["keys"]
        self.bucket_ids: list[int] = index["bucket_ids"]
        self.captions: list[str] = index["captions"]
        self._shard_of: list[str] = [""] * index["num_samples"]
        for shard in index["shards"]:
            for sample in shard["indices"]:
                self._shard_of[sample] = shard["file"]
        null_file = index["null_conditioning"]
        self.null_conditioning: dict[str, torch.Tensor] | None = (
            load_file(str(self.path / null_file)) if null_file else None
        )
        self._handles: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self._shard_of)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return sample ``index``: ``{"index": index, <key>: tensor}`` for each cached key.

        Raises:
            DataError: the sample's shard is missing or unreadable.
        """
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} samples")
        handle = self._handle(self._shard_of[index])
        return {"index": index, **{key: handle.get_tensor(f"{index}.{key}") for key in self.keys}}

    def __getstate__(self) -> dict[str, Any]:
        """Pickle without the open shard handles (a worker process opens its own)."""
        return {**self.__dict__, "_handles": {}}

    def _handle(self, file: str) -> Any:
        """The open handle of a shard, opened on first use."""
        if file not in self._handles:
            try:
                self._handles[file] = safe_open(str(self.path / file), framework="pt")
            except (OSError, SafetensorError) as error:
                raise DataError(
                    f"shard {self.path / file} of the latent cache cannot be read: {error}", hint=PREPROCESS_HINT
                ) from error
        return self._handles[file]


def collate_latents(samples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Batch ``LatentCacheDataset`` items of one bucket.

    Returns:
        ``{"indices": LongTensor[B], <key>: the samples' tensors stacked [B, ...]}``.

    Raises:
        DataError: a key's tensors differ in shape across the samples (samples of different buckets).
    """
    batch = {"indices": torch.tensor([s["index"] for s in samples], dtype=torch.long)}
    for key in samples[0]:
        if key == "index":
            continue
        shapes = sorted({tuple(s[key].shape) for s in samples})
        if len(shapes) > 1:
            raise DataError(
                f"a batch holds {key} of {len(shapes)} shapes ({', '.join(str(list(s)) for s in shapes)}); "
                "a batch must come from one bucket",
                hint="build the loader with build_dataloader, which batches by the dataset's bucket_ids",
            )
        batch[key] = torch.stack([s[key] for s in samples])
    return batch
