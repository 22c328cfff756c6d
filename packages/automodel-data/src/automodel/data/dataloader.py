"""A resumable data loader that gives each data-parallel rank its own part of the data.

A map-style dataset with a ``bucket_ids`` attribute naming more than one bucket (images of
several aspect ratios) is batched by bucket: every global batch comes from one bucket.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset, Sampler
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import StatefulDistributedSampler

from automodel.data.errors import DataError

# torchdata calls a torch function that newer torch deprecates, warning on every iteration;
# it is torchdata's own call and nothing a user can act on.
warnings.filterwarnings("ignore", message="'set_vital' is deprecated", category=UserWarning)


class _ResumableDistributedSampler(StatefulDistributedSampler):
    """A ``DistributedSampler`` whose state holds the epoch as well as the position in it.

    Restoring the state therefore resumes the same shuffled order even when the caller has
    not called ``set_epoch`` again before ``load_state_dict``.
    """

    def state_dict(self) -> dict[str, Any]:
        """Return the position in the epoch and the epoch."""
        return {**super().state_dict(), "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the epoch and the position in it."""
        super().load_state_dict(state_dict)
        self.set_epoch(state_dict["epoch"])


class _BucketBatchSampler(Sampler[list[int]]):
    """Batches of one bucket each; the ranks' k-th batches together make one global batch.

    Each epoch (seeded by ``seed + epoch``) shuffles the indices, cuts each bucket's indices,
    in shuffled order, into global batches of ``batch_size * dp_size`` samples, shuffles the
    order of the global batches, and gives rank ``r`` the slice ``[r * batch_size : (r + 1) *
    batch_size]`` of each. The global batches depend only on the seed, the epoch and the
    global batch size, so a run reads the same samples at each step whatever its number of
    ranks. A bucket's last, incomplete global batch is dropped with ``drop_last``; otherwise
    it repeats its own samples up to a multiple of ``dp_size`` and is split evenly, so every
    rank reads the same number of batches. The state holds the epoch and the batches read.
    """

    def __init__(
        self,
        bucket_ids: Sequence[int],
        batch_size: int,
        *,
        dp_rank: int,
        dp_size: int,
        shuffle: bool,
        seed: int,
        drop_last: bool,
    ) -> None:
        self.bucket_ids = list(bucket_ids)
        self.batch_size = batch_size
        self.dp_rank = dp_rank
        self.dp_size = dp_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.yielded = 0
        self.next_yielded: int | None = None
        self._cache: tuple[int, list[list[int]]] | None = None

    def global_batches(self) -> list[list[int]]:
        """Return this epoch's global batches, in the order they are read (computed once per epoch)."""
        if self._cache is None or self._cache[0] != self.epoch:
            self._cache = (self.epoch, self._make_global_batches())
        return self._cache[1]

    def _make_global_batches(self) -> list[list[int]]:
        """Shuffle, group by bucket, cut into global batches and shuffle their order."""
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        count = len(self.bucket_ids)
        order = torch.randperm(count, generator=generator).tolist() if self.shuffle else range(count)
        by_bucket: dict[int, list[int]] = {}
        for index in order:
            by_bucket.setdefault(self.bucket_ids[index], []).append(index)
        size = self.batch_size * self.dp_size
        batches = []
        for bucket in sorted(by_bucket):
            indices = by_bucket[bucket]
            for start in range(0, len(indices), size):
                batch = indices[start : start + size]
                if len(batch) < size:
                    if self.drop_last:
                        continue
                    batch = [batch[i % len(batch)] for i in range(-(-len(batch) // self.dp_size) * self.dp_size)]
                batches.append(batch)
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        self.yielded = self.next_yielded or 0
        self.next_yielded = None
        for batch in self.global_batches()[self.yielded :]:
            share = len(batch) // self.dp_size
            self.yielded += 1
            yield batch[self.dp_rank * share : (self.dp_rank + 1) * share]

    def __len__(self) -> int:
        return len(self.global_batches())

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch``: the next iteration reads that epoch's batches from the beginning."""
        self.epoch = epoch

    def state_dict(self) -> dict[str, Any]:
        """Return the epoch and the number of batches read in it."""
        return {"yielded": self.yielded, "epoch": self.epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the epoch; the next iteration continues after the batches read."""
        self.epoch = state_dict["epoch"]
        self.next_yielded = state_dict["yielded"]


def build_dataloader(
    dataset: Dataset | IterableDataset,
    batch_size: int,
    collate_fn: Callable[[list[dict[str, Any]]], Any],
    shuffle: bool = True,
    seed: int = 0,
    dp_rank: int = 0,
    dp_size: int = 1,
    num_workers: int = 0,
    drop_last: bool = True,
) -> StatefulDataLoader:
    """Build a ``StatefulDataLoader`` over this rank's part of a dataset.

    A map-style dataset is split across data-parallel ranks by a ``DistributedSampler``
    (``num_replicas=dp_size, rank=dp_rank``), shuffled with ``seed`` plus the epoch. An
    iterable dataset shards itself: its ``set_shard(dp_rank, dp_size)`` is called when it
    has one, and ``shuffle`` does not apply to it.

    A map-style dataset whose ``bucket_ids`` attribute (one bucket per sample) names more
    than one bucket is batched by bucket instead: each batch holds samples of one bucket, the
    ranks' k-th batches make one global batch of ``batch_size * dp_size`` samples of one
    bucket, and the global batches do not depend on ``dp_size`` for the same global batch size.

    Args:
        dataset: the dataset, map-style or iterable.
        batch_size: samples per batch on this rank.
        collate_fn: turns a list of samples into a batch (``default_collater``, ``packed_collater``).
        shuffle: shuffle a map-style dataset, differently each epoch (see ``set_epoch``).
        seed: the shuffling seed, the same on every rank.
        dp_rank: this rank's index among the data-parallel ranks.
        dp_size: the number of data-parallel ranks.
        num_workers: loader worker processes (0 loads in the calling process).
        drop_last: drop the last incomplete batch (and the samples that do not divide evenly across ranks).

    Returns:
        A loader whose ``state_dict()`` / ``load_state_dict()`` resume in the middle of an epoch.
        It draws its iterator seeds from its own generator (``seed + dp_rank``), never from the
        global torch RNG, so creating an iterator after a resume leaves training's RNG exact.
    """
    if isinstance(dataset, IterableDataset):
        if hasattr(dataset, "set_shard"):
            dataset.set_shard(dp_rank, dp_size)
        sampler = None
    elif len(set(getattr(dataset, "bucket_ids", ()))) > 1:
        batch_sampler = _BucketBatchSampler(
            dataset.bucket_ids,
            batch_size,
            dp_rank=dp_rank,
            dp_size=dp_size,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        return StatefulDataLoader(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=collate_fn,
            num_workers=num_workers,
            generator=torch.Generator().manual_seed(seed + dp_rank),
        )
    else:
        sampler = _ResumableDistributedSampler(
            dataset, num_replicas=dp_size, rank=dp_rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
    return StatefulDataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        collate_fn=collate_fn,
        num_workers=num_workers,
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(seed + dp_rank),
    )


def fast_forward(loader: StatefulDataLoader, epoch: int, samples_into_epoch: int) -> None:
    """Position a fresh loader ``samples_into_epoch`` samples into ``epoch``, counted over all data-parallel ranks.

    This resumes a run saved with a different number of data-parallel ranks: the shuffled
    order of an epoch does not depend on the number of ranks, and each optimizer step takes
    the next ``global_batch_size`` samples of it, whatever the split. The next iteration
    starts at this rank's share of that position.

    Raises:
        DataError: the loader reads a streaming dataset (its position cannot be moved to
            another number of ranks), or the position does not divide among the ranks (for a
            loader that batches by bucket: is not a whole number of global batches).
    """
    if isinstance(loader.batch_sampler, _BucketBatchSampler):
        batches = loader.batch_sampler
        global_batch_size = batches.batch_size * batches.dp_size
        if samples_into_epoch % global_batch_size:
            raise DataError(
                f"the {samples_into_epoch} samples already read this epoch are not a whole number of global "
                f"batches of {global_batch_size} samples, and batches by bucket can only resume at a step boundary; "
                "resume with the global batch size the run was saved with"
            )
        batches.load_state_dict({"yielded": samples_into_epoch // global_batch_size, "epoch": epoch})
        return
    sampler = loader.sampler
    if not isinstance(sampler, _ResumableDistributedSampler):
        raise DataError(
            "a streaming dataset cannot resume with a different number of data-parallel ranks than it was saved "
            "with; resume with the same number of processes, or use a map-style dataset"
        )
    if samples_into_epoch % sampler.num_replicas:
        raise DataError(
            f"cannot split the {samples_into_epoch} samples already read this epoch evenly over "
            f"{sampler.num_replicas} data-parallel ranks; resume with a data-parallel size that divides the "
            "global batch size"
        )
    sampler.load_state_dict({"yielded": samples_into_epoch // sampler.num_replicas, "epoch": epoch})


def set_epoch(loader: StatefulDataLoader, epoch: int) -> None:
    """Tell the loader's sampler which epoch starts, so each epoch is shuffled differently.

    Does nothing for a loader over an iterable dataset, which has no such sampler.
    """
    for sampler in (loader.sampler, loader.batch_sampler):
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
