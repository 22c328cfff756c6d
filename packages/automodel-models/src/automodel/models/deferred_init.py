"""Models built on the meta device inside ``defer_weights()``, so that they can be sharded before they hold weights.

A model built on the meta device allocates nothing, and the random initialisations its
constructors run draw nothing, so the random generator would end in another state than
after a real build and the weights it should have had are unknown. Inside
``defer_weights()`` every initialisation that writes a meta tensor (``torch.nn.init``'s
functions, ``Tensor.normal_`` and the other random fills) is

- repeated at once on a throwaway CPU tensor of the same shape and dtype, so the generator
  moves exactly as in a real build (one tensor's memory at a time), and
- recorded with the generator's state before it, so ``materialize_model`` can run it again
  later on the full tensor of one parameter at a time and keep only this rank's shard.

A model built from a config therefore gets, on any number of processes, the weights the same
call gives on one process for the same seed; adapters added inside the block (LoRA) too. A
model built from pretrained files records where they are, and each rank later reads only the
slices of them it holds.
"""

from __future__ import annotations

import contextlib
import contextvars
import types
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

LOAD_STRATEGIES = ("sharded", "rank0_broadcast", "full")
"""``model.load_strategy``: each rank reads its own slices (``sharded``), rank 0 reads and broadcasts
(``rank0_broadcast``, for file systems where many readers are slow), or every rank builds and loads
the whole model before sharding (``full``, today's path for models the meta device cannot build)."""

RANDOM_INIT_NAMES = frozenset(
    {
        "uniform_",
        "normal_",
        "trunc_normal_",
        "kaiming_uniform_",
        "kaiming_normal_",
        "xavier_uniform_",
        "xavier_normal_",
        "orthogonal_",
        "sparse_",
    }
)
"""``torch.nn.init``'s random initialisers (torch dispatches each as one operation; transformers'
``initialization`` module wraps them under the same names)."""

FIXED_INIT_NAMES = frozenset({"zeros_", "ones_", "constant_", "eye_", "dirac_"})
"""``torch.nn.init``'s initialisers that draw nothing."""

RANDOM_FILLS: frozenset[Callable] = frozenset(
    {
        torch.Tensor.uniform_,
        torch.Tensor.normal_,
        torch.Tensor.bernoulli_,
        torch.Tensor.random_,
        torch.Tensor.exponential_,
        torch.Tensor.geometric_,
        torch.Tensor.cauchy_,
        torch.Tensor.log_normal_,
    }
)
"""Tensor methods that fill a tensor from a random generator."""

FIXED_FILLS: frozenset[Callable] = frozenset({torch.Tensor.zero_, torch.Tensor.fill_})
"""Tensor methods that fill a tensor with a constant."""


@dataclass
class InitCall:
    """One initialisation that wrote a meta tensor, to be run again on the real one.

    Attributes:
        func: the function or tensor method called.
        args: its positional arguments after the tensor.
        kwargs: its keyword arguments, without ``tensor`` and ``generator``.
        view: ``(size, stride, storage_offset)`` when it wrote a view of the tensor (a padding row), else None.
        rng_state: the state of the generator it drew from, before it; None when it draws nothing.
    """

    func: Callable
    args: tuple
    kwargs: dict
    view: tuple[tuple[int, ...], tuple[int, ...], int] | None
    rng_state: torch.Tensor | None

    def run(self, tensor: torch.Tensor) -> None:
        """Run the call again on ``tensor`` (a full-size CPU tensor), drawing from a generator in the recorded state."""
        target = tensor if self.view is None else tensor.as_strided(*self.view)
        kwargs = dict(self.kwargs)
        if self.rng_state is not None:
            generator = torch.Generator()
            generator.set_state(self.rng_state)
            kwargs["generator"] = generator
        self.func(target, *self.args, **kwargs)


@dataclass
class PendingWeights:
    """What a model built inside ``defer_weights()`` still needs, for ``materialize_model``.

    Attributes:
        strategy: one of ``LOAD_STRATEGIES``.
        weights_dir: the folder of the pretrained safetensors files (None for a model built from a config).
        init_calls: the recorded initialisations of each parameter, by name, in the order they ran.
        file_names: the name each tensor had when the model was built, by its name now, where they
            differ (adapters wrap layers: ``q_proj.base_layer.weight`` is ``q_proj.weight`` in the files).
    """

    strategy: str
    weights_dir: Path | None = None
    init_calls: dict[str, list[InitCall]] = field(default_factory=dict)
    file_names: dict[str, str] = field(default_factory=dict)


_PENDING: weakref.WeakKeyDictionary[torch.nn.Module, PendingWeights] = weakref.WeakKeyDictionary()


class _Deferral(TorchFunctionMode):
    """The mode active inside ``defer_weights()``: repeats and records initialisations of meta tensors."""

    def __init__(self) -> None:
        super().__init__()
        self.recorded: list[tuple[torch.Tensor, InitCall]] = []
        self.models: list[tuple[torch.nn.Module, PendingWeights, dict[int, str]]] = []
        self.paused = False

    def __torch_function__(self, func: Callable, types_: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if self.paused:
            return func(*args, **kwargs)
        tensor, rest, options = _written_tensor(func, args, kwargs)
        if tensor is None or not tensor.is_meta:
            return func(*args, **kwargs)
        generator = options.pop("generator", None)
        state = None
        if func in RANDOM_FILLS or func.__name__ in RANDOM_INIT_NAMES:
            state = generator.get_state() if generator is not None else torch.random.get_rng_state()
            scratch = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu")
            func(scratch, *rest, **options, **({"generator": generator} if generator is not None else {}))
        view = None if tensor._base is None else (tuple(tensor.shape), tuple(tensor.stride()), tensor.storage_offset())
        base = tensor if tensor._base is None else tensor._base
        self.recorded.append((base, InitCall(func, rest, options, view, state)))
        return func(*args, **kwargs)

    def finish(self) -> None:
        """Give each model built in the block its recorded calls, by parameter name."""
        for model, pending, built_names in self.models:
            for name, tensor in named_tensors(model):
                if built_names.get(id(tensor), name) != name:
                    pending.file_names[name] = built_names[id(tensor)]
            canonical = {id(p): n for n, p in model.named_parameters()}
            for tensor, call in self.recorded:
                name = canonical.get(id(tensor))
                if name is not None:
                    pending.init_calls.setdefault(name, []).append(call)
        self.recorded.clear()


def _written_tensor(func: Callable, args: tuple, kwargs: dict) -> tuple[torch.Tensor | None, tuple, dict]:
    """Return the tensor an initialisation writes, its other positional arguments and its keyword arguments
    without the tensor; ``(None, (), {})`` for any other call."""
    name = getattr(func, "__name__", "")
    is_fill = func in RANDOM_FILLS or func in FIXED_FILLS
    is_init = isinstance(func, types.FunctionType) and name in RANDOM_INIT_NAMES | FIXED_INIT_NAMES
    if not (is_fill or is_init):
        return None, (), {}
    if args and isinstance(args[0], torch.Tensor):
        return args[0], args[1:], dict(kwargs)
    if is_init and isinstance(kwargs.get("tensor"), torch.Tensor):
        return kwargs["tensor"], args, {key: value for key, value in kwargs.items() if key != "tensor"}
    return None, (), {}


_ACTIVE: contextvars.ContextVar[_Deferral | None] = contextvars.ContextVar("automodel_deferral", default=None)


@contextlib.contextmanager
def defer_weights(enabled: bool = True) -> Iterator[None]:
    """Inside the block, ``AutoModelForCausalLM`` / ``AutoModelForImageTextToText`` build on the meta device.

    Build the model (and add adapters) inside, shard it (FSDP2, TP) after, then call
    ``materialize_model``: each rank allocates and reads only its shards. A model whose
    ``load_strategy`` is ``full``, or any other module, is built as usual.

    Args:
        enabled: False makes the block do nothing (one process, or a layout that needs whole models).

    Yields:
        Nothing.
    """
    if not enabled:
        yield
        return
    deferral = _Deferral()
    token = _ACTIVE.set(deferral)
    try:
        with deferral:
            yield
    finally:
        _ACTIVE.reset(token)
        deferral.finish()


def deferring() -> bool:
    """True inside ``defer_weights()``: a model builder should build on the meta device and ``register_deferred``."""
    return _ACTIVE.get() is not None


@contextlib.contextmanager
def not_recording() -> Iterator[None]:
    """Inside ``defer_weights()``, build without repeating or recording initialisations (a pretrained model's
    construction, which transformers runs without drawing); elsewhere, do nothing."""
    deferral = _ACTIVE.get()
    if deferral is None:
        yield
        return
    deferral.paused = True
    try:
        yield
    finally:
        deferral.paused = False


@contextlib.contextmanager
def initializing_on_meta() -> Iterator[None]:
    """Build on the meta device and still run transformers' weight initialisation where a real build runs it.

    transformers skips ``initialize_weights`` in ``post_init`` when it builds on the meta device,
    so the recorded initialisations, and the generator's state after the build, would not be
    those of a real build. Inside this block it runs them (on meta tensors, drawing nothing
    but recorded and repeated by ``defer_weights()``).
    """
    from transformers import modeling_utils

    original = modeling_utils.get_torch_context_manager_or_global_device
    modeling_utils.get_torch_context_manager_or_global_device = lambda: None
    try:
        with torch.device("meta"):
            yield
    finally:
        modeling_utils.get_torch_context_manager_or_global_device = original


def register_deferred(model: torch.nn.Module, strategy: str, weights_dir: Path | None = None) -> None:
    """Mark ``model`` (built on the meta device inside ``defer_weights()``) as waiting for ``materialize_model``.

    Args:
        model: the meta-device model.
        strategy: one of ``LOAD_STRATEGIES``.
        weights_dir: the folder of its pretrained safetensors files, None for a model built from a config.
    """
    deferral = _ACTIVE.get()
    if deferral is None:
        raise RuntimeError("register_deferred is called inside defer_weights()")
    built_names = {id(tensor): name for name, tensor in named_tensors(model)}
    pending = PendingWeights(strategy, weights_dir)
    deferral.models.append((model, pending, built_names))
    _PENDING[model] = pending


def named_tensors(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Return ``(name, tensor)`` for every parameter and buffer of ``model`` (tied parameters once)."""
    return [*model.named_parameters(), *model.named_buffers()]


def pending_weights(model: torch.nn.Module) -> PendingWeights | None:
    """Return what ``model`` still needs from ``materialize_model`` (None for a model that holds its weights)."""
    return _PENDING.get(model)


def take_pending_weights(model: torch.nn.Module) -> PendingWeights | None:
    """Return and forget what ``model`` still needs (``materialize_model`` calls it once)."""
    return _PENDING.pop(model, None)
