"""StepScheduler: turns a dataloader into optimizer steps of micro-batches, and says when to log/validate/save."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from automodel.training.errors import TrainingError


def derive_grad_accumulation(
    global_batch_size: int, local_batch_size: int, dp_size: int = 1, grad_accumulation_steps: int | None = None
) -> int:
    """Return gradient-accumulation steps = global / (local x data-parallel size).

    Raises TrainingError showing the arithmetic when the sizes do not divide, or when an
    explicit ``grad_accumulation_steps`` disagrees with them.
    """
    for name, value in (("global_batch_size", global_batch_size), ("local_batch_size", local_batch_size)):
        if not isinstance(value, int) or value < 1:
            raise TrainingError(f"step_scheduler.{name} must be a positive integer, got {value!r}")
    per_step = local_batch_size * dp_size
    if global_batch_size % per_step:
        raise TrainingError(
            f"step_scheduler.global_batch_size ({global_batch_size}) is not a multiple of local_batch_size "
            f"({local_batch_size}) x data-parallel size ({dp_size}) = {per_step}; pick a global_batch_size "
            f"that is, e.g. {max(1, global_batch_size // per_step) * per_step}"
        )
    derived = global_batch_size // per_step
    if grad_accumulation_steps is not None and grad_accumulation_steps != derived:
        raise TrainingError(
            f"step_scheduler.grad_accumulation_steps is {grad_accumulation_steps}, but global_batch_size "
            f"{global_batch_size} / (local_batch_size {local_batch_size} x data-parallel size {dp_size}) = {derived}; "
            "remove grad_accumulation_steps or make the sizes agree"
        )
    return derived


class StepScheduler:
    """Groups micro-batches into optimizer steps across epochs and tracks (step, epoch).

    Args:
        dataloader: yields micro-batches of ``local_batch_size`` samples; if it has a
            ``sampler`` with ``set_epoch``, that is called at the start of every epoch.
        global_batch_size: samples per optimizer step over all data-parallel ranks.
        local_batch_size: samples per micro-batch on one rank.
        dp_size: data-parallel world size.
        grad_accumulation_steps: optional; must agree with the sizes.
        max_steps: stop after this many optimizer steps.
        num_epochs: stop after this many epochs. Training ends at whichever limit comes
            first; with neither given it runs one epoch.
        val_check_interval / checkpoint_interval / log_interval: every how many steps to
            validate / save / log (None or 0: never, except at the end for checkpoints).

    Iterating yields, for every optimizer step, the list of its micro-batches. An epoch
    whose remaining micro-batches cannot fill a whole step drops them.

    ``MINIMUMS`` holds the least value of each numeric argument, for config schemas.
    """

    MINIMUMS: ClassVar[dict[str, int]] = {
        "global_batch_size": 1,
        "local_batch_size": 1,
        "grad_accumulation_steps": 1,
        "max_steps": 1,
        "num_epochs": 1,
        "val_check_interval": 0,
        "checkpoint_interval": 0,
        "log_interval": 1,
    }

    def __init__(
        self,
        dataloader: Iterable,
        global_batch_size: int,
        local_batch_size: int,
        dp_size: int = 1,
        grad_accumulation_steps: int | None = None,
        max_steps: int | None = None,
        num_epochs: int | None = None,
        val_check_interval: int | None = None,
        checkpoint_interval: int | None = None,
        log_interval: int = 1,
    ) -> None:
        self.dataloader = dataloader
        self.grad_accumulation_steps = derive_grad_accumulation(
            global_batch_size, local_batch_size, dp_size, grad_accumulation_steps
        )
        self.global_batch_size = global_batch_size
        self.local_batch_size = local_batch_size
        if num_epochs is not None and (not isinstance(num_epochs, int) or num_epochs < 1):
            raise TrainingError(f"step_scheduler.num_epochs must be a positive integer, got {num_epochs!r}")
        self.num_epochs = num_epochs if num_epochs is not None or max_steps is not None else 1
        self.max_steps = self._total_steps(max_steps)
        self.val_check_interval = val_check_interval or 0
        self.checkpoint_interval = checkpoint_interval or 0
        self.log_interval = max(1, log_interval or 1)
        self.step = 0
        self.epoch = 0
        self.epoch_step = 0

    def _total_steps(self, max_steps: int | None) -> int:
        if max_steps is not None and (not isinstance(max_steps, int) or max_steps < 1):
            raise TrainingError(f"step_scheduler.max_steps must be a positive integer, got {max_steps!r}")
        try:
            length = len(self.dataloader)  # type: ignore[arg-type]
        except TypeError:
            if max_steps is None:
                raise TrainingError(
                    "step_scheduler.max_steps is required when the dataset has no length (streaming)"
                ) from None
            return max_steps
        per_epoch = length // self.grad_accumulation_steps
        if per_epoch < 1:
            raise TrainingError(
                f"one epoch has {length} micro-batches, fewer than the {self.grad_accumulation_steps} that make "
                "one optimizer step; lower step_scheduler.global_batch_size or use more data"
            )
        if self.num_epochs is None:
            return max_steps  # type: ignore[return-value]
        by_epochs = per_epoch * self.num_epochs
        return by_epochs if max_steps is None else min(max_steps, by_epochs)

    def __iter__(self) -> Iterator[list[Any]]:
        while self.step < self.max_steps and (self.num_epochs is None or self.epoch < self.num_epochs):
            sampler = getattr(self.dataloader, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(self.epoch)
            group: list[Any] = []
            for micro_batch in self.dataloader:
                group.append(micro_batch)
                if len(group) < self.grad_accumulation_steps:
                    continue
                self.step += 1
                self.epoch_step += 1
                yield group
                group = []
                if self.step >= self.max_steps:
                    return
            self.epoch += 1
            self.epoch_step = 0

    @property
    def is_last_step(self) -> bool:
        """True after the final optimizer step."""
        return self.step >= self.max_steps

    @property
    def is_log_step(self) -> bool:
        """True when metrics should be logged after the current step."""
        return self.step % self.log_interval == 0 or self.is_last_step

    @property
    def is_val_step(self) -> bool:
        """True when validation should run after the current step."""
        return bool(self.val_check_interval) and (self.step % self.val_check_interval == 0 or self.is_last_step)

    @property
    def is_ckpt_step(self) -> bool:
        """True when a checkpoint should be written after the current step (always after the last)."""
        return self.is_last_step or (bool(self.checkpoint_interval) and self.step % self.checkpoint_interval == 0)

    @property
    def samples_into_epoch(self) -> int:
        """Samples (over all data-parallel ranks) the optimizer steps of the current epoch have used."""
        return self.epoch_step * self.global_batch_size

    def state_dict(self) -> dict[str, int]:
        """Return ``{"step", "epoch", "epoch_step"}`` for checkpointing."""
        return {"step": self.step, "epoch": self.epoch, "epoch_step": self.epoch_step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Restore ``step``, ``epoch`` and the step within the epoch from ``state_dict()``."""
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.epoch_step = int(state.get("epoch_step", 0))
