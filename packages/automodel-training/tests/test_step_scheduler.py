"""StepScheduler: batch arithmetic, grouping micro-batches into steps, epochs, intervals, state."""

from __future__ import annotations

import pytest

from automodel.training import StepScheduler, TrainingError, derive_grad_accumulation


class Sampler:
    def __init__(self) -> None:
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)


class Loader:
    """A list of micro-batches with a sampler, like a DataLoader."""

    def __init__(self, n: int) -> None:
        self.items = list(range(n))
        self.sampler = Sampler()

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@pytest.mark.parametrize(("gbs", "lbs", "dp", "expected"), [(32, 4, 2, 4), (8, 8, 1, 1), (64, 2, 4, 8)])
def test_grad_accumulation_is_global_over_local_times_data_parallel(gbs, lbs, dp, expected):
    assert derive_grad_accumulation(gbs, lbs, dp) == expected


def test_sizes_that_do_not_divide_show_the_arithmetic():
    with pytest.raises(
        TrainingError,
        match=r"global_batch_size \(30\) is not a multiple of local_batch_size \(4\) x "
        r"data-parallel size \(2\) = 8; .* e.g. 24",
    ):
        derive_grad_accumulation(30, 4, 2)


def test_an_explicit_grad_accumulation_that_disagrees_shows_the_arithmetic():
    with pytest.raises(
        TrainingError,
        match=r"grad_accumulation_steps is 3, but global_batch_size 32 / "
        r"\(local_batch_size 4 x data-parallel size 2\) = 4",
    ):
        derive_grad_accumulation(32, 4, 2, grad_accumulation_steps=3)


def test_an_explicit_grad_accumulation_that_agrees_is_accepted():
    assert derive_grad_accumulation(32, 4, 2, grad_accumulation_steps=4) == 4


@pytest.mark.parametrize("value", [0, -8, 2.5, None])
def test_batch_sizes_must_be_positive_integers(value):
    with pytest.raises(TrainingError, match="global_batch_size must be a positive integer"):
        derive_grad_accumulation(value, 4)


def test_steps_group_micro_batches_and_epochs_advance_the_sampler():
    loader = Loader(6)
    scheduler = StepScheduler(loader, global_batch_size=4, local_batch_size=2, num_epochs=2)
    steps = list(scheduler)
    assert steps == [[0, 1], [2, 3], [4, 5], [0, 1], [2, 3], [4, 5]]
    assert loader.sampler.epochs == [0, 1]
    assert (scheduler.step, scheduler.epoch, scheduler.max_steps) == (6, 1, 6)  # epoch is the 0-based one in progress


def test_an_incomplete_group_at_the_end_of_an_epoch_is_dropped():
    scheduler = StepScheduler(Loader(5), global_batch_size=2, local_batch_size=1, num_epochs=1)
    assert list(scheduler) == [[0, 1], [2, 3]]


def test_max_steps_alone_runs_as_many_epochs_as_it_needs():
    scheduler = StepScheduler(Loader(4), global_batch_size=2, local_batch_size=1, max_steps=5)
    assert len(list(scheduler)) == 5
    assert scheduler.epoch == 2


def test_the_earlier_of_max_steps_and_num_epochs_ends_training():
    assert StepScheduler(Loader(4), 2, 1, max_steps=5, num_epochs=1).max_steps == 2
    assert StepScheduler(Loader(40), 2, 1, max_steps=5, num_epochs=1).max_steps == 5


def test_intervals_say_when_to_log_validate_and_save():
    scheduler = StepScheduler(
        Loader(10), 1, 1, max_steps=10, val_check_interval=4, checkpoint_interval=5, log_interval=3
    )
    flags = []
    for _ in scheduler:
        flags.append((scheduler.step, scheduler.is_log_step, scheduler.is_val_step, scheduler.is_ckpt_step))
    assert [s for s, log, _, _ in flags if log] == [3, 6, 9, 10]
    assert [s for s, _, val, _ in flags if val] == [4, 8, 10]
    assert [s for s, _, _, ckpt in flags if ckpt] == [5, 10]


def test_state_dict_restores_step_and_epoch_and_iteration_continues_to_max_steps():
    first = StepScheduler(Loader(4), 2, 1, max_steps=6)
    for _ in first:
        if first.step == 3:
            break
    second = StepScheduler(Loader(4), 2, 1, max_steps=6)
    second.load_state_dict(first.state_dict())
    assert second.state_dict() == {"step": 3, "epoch": 1, "epoch_step": 1}
    assert second.samples_into_epoch == 2
    assert len(list(second)) == 3
    assert (second.epoch, second.epoch_step) == (2, 1)


def test_a_state_saved_before_epoch_step_existed_loads_at_the_epoch_start():
    scheduler = StepScheduler(Loader(4), 2, 1, max_steps=6)
    scheduler.load_state_dict({"step": 2, "epoch": 1})
    assert scheduler.epoch_step == 0


def test_a_dataset_without_length_needs_max_steps():
    with pytest.raises(TrainingError, match="max_steps is required when the dataset has no length"):
        StepScheduler(iter(range(10)), 2, 1)
    assert StepScheduler(iter(range(10)), 2, 1, max_steps=3).max_steps == 3


def test_an_epoch_too_short_for_one_step_is_an_error():
    with pytest.raises(TrainingError, match="one epoch has 3 micro-batches, fewer than the 4"):
        StepScheduler(Loader(3), 4, 1)


@pytest.mark.parametrize(("key", "value"), [("max_steps", 0), ("num_epochs", 0), ("max_steps", 1.5)])
def test_step_limits_must_be_positive_integers(key, value):
    with pytest.raises(TrainingError, match=f"step_scheduler.{key} must be a positive integer"):
        StepScheduler(Loader(4), 1, 1, **{key: value})
