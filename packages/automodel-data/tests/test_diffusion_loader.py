"""build_dataloader over bucketed data: one bucket per global batch, the same at any world size, exact resume."""

from __future__ import annotations

import pytest
from torch.utils.data import Dataset

from automodel.data import DataError, build_dataloader, fast_forward, set_epoch

# 60 samples in three buckets of 30, 18 and 12.
BUCKET_IDS = [0, 1, 0, 2, 0, 1, 0, 0, 2, 1] * 6


class Bucketed(Dataset):
    """Items are their own indices; ``bucket_ids`` as an image dataset has them."""

    def __init__(self, bucket_ids: list[int]) -> None:
        self.bucket_ids = bucket_ids

    def __len__(self) -> int:
        return len(self.bucket_ids)

    def __getitem__(self, index: int) -> int:
        return index


def _loader(dataset: Dataset, batch_size: int, rank: int = 0, world: int = 1, **kwargs):
    return build_dataloader(dataset, batch_size, collate_fn=list, seed=11, dp_rank=rank, dp_size=world, **kwargs)


def _global_steps(dataset: Dataset, batch_size: int, world: int, epoch: int = 0, **kwargs) -> list[list[list[int]]]:
    """Each step's batches of every rank: steps[k][r]."""
    per_rank = []
    for rank in range(world):
        loader = _loader(dataset, batch_size, rank, world, **kwargs)
        set_epoch(loader, epoch)
        per_rank.append(list(loader))
    assert len({len(batches) for batches in per_rank}) == 1  # every rank takes the same number of steps
    return [list(step) for step in zip(*per_rank, strict=True)]


def test_every_global_batch_holds_one_bucket_and_each_sample_at_most_once() -> None:
    dataset = Bucketed(BUCKET_IDS)
    steps = _global_steps(dataset, batch_size=3, world=2)
    assert len(steps) == 5 + 3 + 2  # whole global batches of 6: 30 // 6, 18 // 6, 12 // 6
    seen = []
    for step in steps:
        assert all(len(batch) == 3 for batch in step)
        assert len({BUCKET_IDS[i] for batch in step for i in batch}) == 1
        seen += [i for batch in step for i in batch]
    assert sorted(seen) == list(range(60))
    assert [BUCKET_IDS[step[0][0]] for step in steps] != sorted(BUCKET_IDS[step[0][0]] for step in steps)  # mixed


@pytest.mark.parametrize("bucket_ids", [BUCKET_IDS, [0] * 60], ids=["buckets", "one bucket"])
def test_the_samples_of_each_step_do_not_depend_on_the_number_of_ranks(bucket_ids: list[int]) -> None:
    dataset = Bucketed(bucket_ids)
    for epoch in (0, 1):
        one = [set(step[0]) for step in _global_steps(dataset, batch_size=12, world=1, epoch=epoch)]
        two = [set().union(*step) for step in _global_steps(dataset, batch_size=6, world=2, epoch=epoch)]
        four = [set().union(*step) for step in _global_steps(dataset, batch_size=3, world=4, epoch=epoch)]
        assert one == two == four
        assert len(one) >= 4


def test_epochs_reshuffle_and_the_same_epoch_repeats() -> None:
    dataset = Bucketed(BUCKET_IDS)
    assert _global_steps(dataset, 4, 1, epoch=0) == _global_steps(dataset, 4, 1, epoch=0)
    assert _global_steps(dataset, 4, 1, epoch=0) != _global_steps(dataset, 4, 1, epoch=1)
    unshuffled = [step[0] for step in _global_steps(dataset, 6, 1, shuffle=False)]
    assert unshuffled[0] == [0, 2, 4, 6, 7, 10]  # bucket 0's first six indices
    assert [BUCKET_IDS[b[0]] for b in unshuffled] == sorted(BUCKET_IDS[b[0]] for b in unshuffled)


@pytest.mark.parametrize("epoch", [0, 1])
def test_a_restored_state_yields_exactly_the_batches_that_came_next(epoch: int) -> None:
    dataset = Bucketed(BUCKET_IDS)
    first = _loader(dataset, 3, rank=1, world=2)
    set_epoch(first, epoch)
    batches = iter(first)
    head = [next(batches) for _ in range(4)]
    state = first.state_dict()
    rest = list(batches)
    resumed = _loader(dataset, 3, rank=1, world=2)
    resumed.load_state_dict(state)
    assert list(resumed) == rest
    assert len(head) + len(rest) == len(first) == 10
    set_epoch(resumed, epoch + 1)
    assert len(list(resumed)) == 10  # the next epoch starts from its beginning


@pytest.mark.parametrize(("saved_world", "resumed_world"), [(1, 2), (2, 4), (4, 1)])
def test_fast_forward_resumes_bucketed_batches_under_another_number_of_ranks(saved_world, resumed_world) -> None:
    dataset = Bucketed(BUCKET_IDS)
    reference = [set().union(*step) for step in _global_steps(dataset, 12 // saved_world, saved_world, epoch=3)]
    after = []
    for rank in range(resumed_world):
        loader = _loader(dataset, 12 // resumed_world, rank, resumed_world)
        fast_forward(loader, epoch=3, samples_into_epoch=2 * 12)
        after.append(list(loader))
    assert [set().union(*map(set, step)) for step in zip(*after, strict=True)] == reference[2:]
    with pytest.raises(DataError, match="not a whole number of global batches of 12"):
        fast_forward(loader, epoch=3, samples_into_epoch=18)


def test_without_drop_last_every_sample_is_read_and_every_rank_takes_the_same_steps() -> None:
    dataset = Bucketed(BUCKET_IDS[:25])  # buckets of 13, 7 and 5 samples
    steps = _global_steps(dataset, batch_size=2, world=3, drop_last=False)
    assert {i for step in steps for batch in step for i in batch} == set(range(25))
    for step in steps:
        assert len({len(batch) for batch in step}) == 1 and all(step)
        assert len({BUCKET_IDS[i] for batch in step for i in batch}) == 1


def test_one_bucket_keeps_the_plain_sampler() -> None:
    plain = _loader(list(range(60)), 4, rank=1, world=2)
    single = _loader(Bucketed([5] * 60), 4, rank=1, world=2)
    assert list(single) == list(plain)
    assert single.batch_sampler.__class__ is plain.batch_sampler.__class__
