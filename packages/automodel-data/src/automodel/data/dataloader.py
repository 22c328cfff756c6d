"""A resumable data loader that gives each data-parallel rank its own part of the data."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
from torch.utils.data import Dataset, IterableDataset
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
            another number of ranks), or the position does not divide among the ranks.
    """
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
    if hasattr(loader.sampler, "set_epoch"):
        loader.sampler.set_epoch(epoch)
