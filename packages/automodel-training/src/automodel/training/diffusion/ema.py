"""An exponential moving average of a model's trainable weights, checkpointable with the model (FSDP2 shards too)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch

from automodel.training.diffusion.checks import check_probability


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's part of a DTensor (sharing its storage), or the tensor itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def _copy(target: torch.Tensor, source: torch.Tensor) -> None:
    """Copy ``source`` into ``target`` shard by shard, or whole when only ``source`` is sharded (a collective)."""
    if hasattr(source, "to_local") and not hasattr(target, "to_local"):
        target.copy_(source.full_tensor())
    else:
        _local(target).copy_(_local(source))


class ExponentialMovingAverage(torch.nn.Module):
    """Shadow copies of the trainable parameters, moved toward them by ``update()`` after each optimizer step.

    Args:
        named_parameters: the model's ``named_parameters()``; those with ``requires_grad`` are tracked.
        decay: the weight of the old average, ``shadow = decay * shadow + (1 - decay) * param``.
        update_after_step: the first this many updates copy the parameters instead of averaging.
        warmup: use ``min(decay, (1 + n) / (10 + n))`` for the n-th averaging update (n from 0),
            so early averages forget the random start quickly.
        dtype: the shadows' dtype (e.g. ``torch.float32`` for bf16 parameters); None keeps the parameters'.

    The shadows are buffers ``shadow_{i}`` and the update count the buffer ``num_updates``, so
    ``state_dict()`` (and torch.distributed.checkpoint on it) saves and restores the average
    exactly. With FSDP2 parameters (DTensors) the shadows are DTensors of the same sharding and
    every update is local to the rank's shards.
    """

    def __init__(
        self,
        named_parameters: Iterable[tuple[str, torch.Tensor]],
        decay: float = 0.9999,
        *,
        update_after_step: int = 0,
        warmup: bool = False,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        check_probability("ema decay", decay)
        tracked = [(name, param) for name, param in named_parameters if param.requires_grad]
        self.names = [name for name, _ in tracked]
        self._tracked = [param for _, param in tracked]
        self.decay = decay
        self.update_after_step = update_after_step
        self.warmup = warmup
        for i, param in enumerate(self._tracked):
            self.register_buffer(f"shadow_{i}", param.detach().to(dtype or param.dtype, copy=True))
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @property
    def shadows(self) -> list[torch.Tensor]:
        """The shadow tensors, in the order of ``names``."""
        return [getattr(self, f"shadow_{i}") for i in range(len(self.names))]

    def current_decay(self) -> float:
        """Return the decay the next ``update()`` uses (0 while it only copies the parameters)."""
        averaging_updates = int(self.num_updates) - self.update_after_step
        if averaging_updates < 0:
            return 0.0
        if self.warmup:
            return min(self.decay, (1 + averaging_updates) / (10 + averaging_updates))
        return self.decay

    @torch.no_grad()
    def update(self) -> None:
        """Move every shadow toward its parameter: ``shadow += (1 - decay) * (param - shadow)``."""
        weight = 1.0 - self.current_decay()
        shadows = [_local(shadow) for shadow in self.shadows]
        params = [_local(param).to(shadow.dtype) for param, shadow in zip(self._tracked, shadows, strict=True)]
        if shadows:
            torch._foreach_lerp_(shadows, params, weight)
        self.num_updates += 1

    def _targets(self, parameters: Iterable[tuple[str, torch.Tensor]] | None) -> list[torch.Tensor]:
        """The tensors matching the tracked names: the tracked parameters, or those of ``parameters`` by name."""
        if parameters is None:
            return self._tracked
        by_name = dict(parameters)
        missing = [name for name in self.names if name not in by_name]
        if missing:
            raise KeyError(f"The parameters lack the EMA's tracked names {missing}.")
        return [by_name[name] for name in self.names]

    @torch.no_grad()
    def copy_to(self, parameters: Iterable[tuple[str, torch.Tensor]] | None = None) -> None:
        """Write the averages into the tracked parameters, or into ``parameters`` (``named_parameters()``) by name."""
        for target, shadow in zip(self._targets(parameters), self.shadows, strict=True):
            _copy(target, shadow)

    def shadow_state_dict(self) -> dict[str, torch.Tensor]:
        """Return ``{parameter name: shadow}`` under the trained model's names (DTensors when sharded)."""
        return dict(zip(self.names, self.shadows, strict=True))

    @contextlib.contextmanager
    def swapped(self, parameters: Iterable[tuple[str, torch.Tensor]] | None = None) -> Iterator[None]:
        """Put the averages into the parameters for the block (e.g. sampling with EMA weights), then restore them."""
        targets = self._targets(parameters)
        with torch.no_grad():
            saved = [_local(target).clone() for target in targets]
            self.copy_to(zip(self.names, targets, strict=True))
        try:
            yield
        finally:
            with torch.no_grad():
                for target, original in zip(targets, saved, strict=True):
                    _local(target).copy_(original)
