"""Give a model built inside ``defer_weights()`` (and sharded since) its weights, each rank only its shards.

``materialize_model`` allocates the shards (``to_empty``), recomputes the buffers the files
do not hold (rotary frequencies) with the model's own ``_init_weights``, runs the recorded
initialisations again one full tensor at a time and keeps this rank's part, and reads the
pretrained safetensors files: with ``sharded`` each rank reads, through
``torch.distributed.checkpoint``'s Hugging Face reader, only the slices of the tensors it holds
(the files are memory-mapped); with ``rank0_broadcast`` rank 0 reads each tensor and
broadcasts it, and every rank keeps its part.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors import safe_open
from torch.distributed.checkpoint import DefaultLoadPlanner, HuggingFaceStorageReader
from torch.distributed.checkpoint import load as dcp_load
from torch.distributed.tensor import DTensor, distribute_tensor

from automodel.models.deferred_init import InitCall, PendingWeights, named_tensors, take_pending_weights
from automodel.models.errors import ModelError

_TORCH_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U64": torch.uint64,
    "U32": torch.uint32,
    "U16": torch.uint16,
    "U8": torch.uint8,
    "BOOL": torch.bool,
    "F8_E4M3": torch.float8_e4m3fn,
    "F8_E5M2": torch.float8_e5m2,
}
"""safetensors' dtype names in a file header, as torch dtypes."""


@dataclass(frozen=True)
class LoadReport:
    """What ``materialize_model`` did on this rank.

    Attributes:
        bytes_read: bytes of tensor data this rank read from the weight files.
        bytes_in_files: bytes of tensor data the files hold in all.
        tensors_loaded: how many of the model's tensors were filled from the files.
        tensors_initialized: how many parameters got their recorded initialisation.
        seconds: how long it took.
    """

    bytes_read: int
    bytes_in_files: int
    tensors_loaded: int
    tensors_initialized: int
    seconds: float

    def describe(self) -> str:
        """One line for the run's log: what this rank read, of how much, in how long."""
        if self.bytes_in_files:
            gib = 1024**3
            return (
                f"weights: this rank read {self.bytes_read / gib:.2f} of {self.bytes_in_files / gib:.2f} GiB "
                f"({self.tensors_loaded} tensors) in {self.seconds:.1f} s"
            )
        return f"weights: {self.tensors_initialized} parameters initialised shard by shard in {self.seconds:.1f} s"


def materialize_model(model: torch.nn.Module, device: torch.device | str) -> LoadReport | None:
    """Allocate and fill the shards of a model built inside ``defer_weights()``; do nothing to any other model.

    Call it after sharding (FSDP2's ``fully_shard``, tensor parallelism), on every rank.

    Args:
        model: the model (not a DDP wrapper), its parameters still on the meta device.
        device: where this rank's shards live.

    Returns:
        What was read and initialised on this rank, or None when the model needed nothing.

    Raises:
        ModelError: a parameter neither the files nor a recorded initialisation fill (a model
            whose constructor sets it in a way the meta device cannot repeat), a buffer its
            ``_init_weights`` does not recompute, or weight files without safetensors; each names
            the tensor and says to set ``model.load_strategy: full``.
    """
    pending = take_pending_weights(model)
    if pending is None:
        return None
    start = time.perf_counter()
    index = _file_index(pending.weights_dir) if pending.weights_dir is not None else {}
    kept = _real_tensors(model)
    aliases = _tied_aliases(model)
    model.to_empty(device=device)
    _retie(model, aliases)
    _restore(model, kept)
    with torch.no_grad():
        _recompute_buffers(model, keep=set(kept))
        _replay_initialisations(model, pending.init_calls)
        read = _read_files(model, pending, index, skip=set(pending.init_calls) | set(kept))
    _check_filled(model, set(pending.init_calls) | set(kept) | read.loaded)
    return LoadReport(
        bytes_read=read.bytes_read,
        bytes_in_files=read.bytes_in_files,
        tensors_loaded=len(read.loaded),
        tensors_initialized=len(pending.init_calls),
        seconds=time.perf_counter() - start,
    )


def _local(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to_local() if isinstance(tensor, DTensor) else tensor


def _tied_aliases(model: torch.nn.Module) -> list[tuple[str, str]]:
    """``(alias, canonical name)`` of every parameter reached under several names (tied embeddings)."""
    canonical: dict[int, str] = {}
    aliases = []
    for name, parameter in model.named_parameters(remove_duplicate=False):
        first = canonical.setdefault(id(parameter), name)
        if first != name:
            aliases.append((name, first))
    return aliases


def _retie(model: torch.nn.Module, aliases: list[tuple[str, str]]) -> None:
    """Point each alias at its canonical parameter again (``to_empty`` gives every module a parameter of its own)."""
    for alias, name in aliases:
        owner_name, _, attribute = alias.rpartition(".")
        model.get_submodule(owner_name)._parameters[attribute] = model.get_parameter(name)


def _real_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the parameters and buffers already off the meta device (``to_empty`` would drop them)."""
    tensors = dict(named_tensors(model))
    return {name: _local(t).detach().clone() for name, t in tensors.items() if not _local(t).is_meta}


def _restore(model: torch.nn.Module, kept: Mapping[str, torch.Tensor]) -> None:
    tensors = dict(named_tensors(model))
    with torch.no_grad():
        for name, value in kept.items():
            _local(tensors[name]).copy_(value)


def _recompute_buffers(model: torch.nn.Module, keep: set[str]) -> None:
    """Recompute every buffer with the ``_init_weights`` of the transformers model that owns its module.

    Parameters are marked initialised meanwhile, so transformers' init functions leave them
    alone; the random generators are left as they were. Float buffers start as NaN, so one
    that nothing recomputes is found by ``_check_filled``.
    """
    for name, buffer in model.named_buffers():
        if buffer.is_floating_point() and name not in keep:
            buffer.fill_(math.nan)
    parameters = list(model.parameters())
    with _marked_initialized(parameters), torch.random.fork_rng(devices=[]), _transformers_init_guard():
        for owner, module in _modules_with_owner(model):
            if owner is not None and any(True for _ in module.buffers(recurse=False)):
                owner._init_weights(module)


@contextlib.contextmanager
def _marked_initialized(tensors: list[torch.Tensor]) -> Iterator[None]:
    before = [tensor.__dict__.get("_is_hf_initialized") for tensor in tensors]
    for tensor in tensors:
        tensor._is_hf_initialized = True
    try:
        yield
    finally:
        for tensor, flag in zip(tensors, before, strict=True):
            if flag is None:
                del tensor._is_hf_initialized
            else:
                tensor._is_hf_initialized = flag


@contextlib.contextmanager
def _transformers_init_guard() -> Iterator[None]:
    """transformers' routing of ``torch.nn.init`` through its own functions, which skip initialised tensors."""
    from transformers import initialization

    with initialization.guard_torch_init_functions():
        yield


def _modules_with_owner(model: torch.nn.Module) -> Iterator[tuple[object | None, torch.nn.Module]]:
    """Yield ``(nearest transformers model at or above it, module)`` for every module, children first."""
    from transformers import PreTrainedModel

    def walk(module: torch.nn.Module, owner: object | None) -> Iterator[tuple[object | None, torch.nn.Module]]:
        here = module if isinstance(module, PreTrainedModel) else owner
        for child in module.children():
            yield from walk(child, here)
        yield here, module

    yield from walk(model, None)


def _replay_initialisations(model: torch.nn.Module, init_calls: Mapping[str, list[InitCall]]) -> None:
    """Run each parameter's recorded initialisations on its full tensor (one at a time) and keep this rank's part."""
    parameters = dict(model.named_parameters())
    for name, calls in init_calls.items():
        parameter = parameters[name]
        if all(call.view is not None for call in calls):
            raise ModelError(
                f"parameter {name} is only partly initialised by the calls recorded while the model was built on "
                "the meta device; set `model.load_strategy: full` to build it whole on every rank"
            )
        full = torch.empty(parameter.shape, dtype=parameter.dtype, device="cpu")
        for call in calls:
            call.run(full)
        _copy_full_into(parameter, full)


def _copy_full_into(target: torch.Tensor, full: torch.Tensor) -> None:
    """Copy the part of ``full`` (a whole tensor, on any device) that ``target`` holds on this rank into it."""
    local = _local(target)
    if isinstance(target, DTensor):
        full = distribute_tensor(
            full.to(local.device, target.dtype), target.device_mesh, target.placements, src_data_rank=None
        ).to_local()
    local.copy_(full)


@dataclass
class _Read:
    loaded: set[str]
    bytes_read: int = 0
    bytes_in_files: int = 0


@dataclass(frozen=True)
class _FileTensor:
    file: Path
    shape: tuple[int, ...]
    dtype: str

    @property
    def torch_dtype(self) -> torch.dtype:
        return _TORCH_DTYPES[self.dtype]

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.torch_dtype.itemsize


def _read_files(
    model: torch.nn.Module, pending: PendingWeights, index: Mapping[str, _FileTensor], skip: set[str]
) -> _Read:
    """Fill the model's tensors that the weight files (``index``) hold, skipping ``skip``; none without files."""
    if pending.weights_dir is None:
        return _Read(loaded=set())
    targets, loaded = {}, set()
    for name, tensor in model.state_dict(keep_vars=True).items():
        file_name = pending.file_names.get(name, name)
        if file_name in index and name not in skip:
            targets[file_name] = tensor
            loaded.add(name)
    read = _Read(loaded=loaded, bytes_in_files=sum(entry.nbytes for entry in index.values()))
    whole = {name: tensor for name, tensor in targets.items() if _takes_mapped(tensor, index[name])}
    broadcast = pending.strategy == "rank0_broadcast" and dist.is_initialized()
    if whole and not broadcast:
        read.bytes_read += _assign_mapped(model, whole, index)
        targets = {name: tensor for name, tensor in targets.items() if name not in whole}
    if not targets:
        return read
    if broadcast:
        read.bytes_read += _broadcast_from_rank0(targets, index)
    else:
        planner = _CountingPlanner({name: entry.torch_dtype.itemsize for name, entry in index.items()})
        dcp_load(
            {name: t.detach() for name, t in targets.items()},
            storage_reader=HuggingFaceStorageReader(str(pending.weights_dir)),
            planner=planner,
        )
        read.bytes_read += int(planner.bytes_read)
    return read


def _takes_mapped(tensor: torch.Tensor, entry: _FileTensor) -> bool:
    """Whether ``tensor`` can simply become the file's memory-mapped tensor: whole (not a DTensor), on the CPU,
    of the file's dtype and shape."""
    return (
        not isinstance(tensor, DTensor)
        and tensor.device.type == "cpu"
        and tensor.dtype == entry.torch_dtype
        and tuple(tensor.shape) == entry.shape
    )


def _assign_mapped(model: torch.nn.Module, whole: Mapping[str, torch.Tensor], index: Mapping[str, _FileTensor]) -> int:
    """Make each of ``whole`` (by file name) the file's memory-mapped tensor, copying nothing (as transformers'
    own loading does; pages are read when first touched, and written ones are private to the process).
    Returns the bytes mapped."""
    owners = {id(tensor): name for name, tensor in named_tensors(model)}
    by_file: dict[Path, list[str]] = {}
    for file_name in whole:
        by_file.setdefault(index[file_name].file, []).append(file_name)
    aliases = _tied_aliases(model)
    for file, names in by_file.items():
        with safe_open(file, framework="pt") as handle:
            for file_name in names:
                target = whole[file_name]
                owner_name, _, attribute = owners[id(target)].rpartition(".")
                owner = model.get_submodule(owner_name)
                value = handle.get_tensor(file_name)
                if isinstance(target, torch.nn.Parameter):
                    owner._parameters[attribute] = torch.nn.Parameter(value, requires_grad=target.requires_grad)
                else:
                    owner._buffers[attribute] = value
    _retie(model, aliases)
    return sum(index[name].nbytes for name in whole)


def weights_absent_from_files(model: torch.nn.Module, folder: Path) -> list[str]:
    """Return the names of ``model``'s parameters and persistent buffers that ``folder``'s safetensors files do not
    hold under the same name (every name when there are no safetensors files); tied aliases count as held."""
    try:
        index = _file_index(folder)
    except ModelError:
        return [name for name, _ in model.named_parameters()]
    persistent = set(model.state_dict(keep_vars=True))
    names = [name for name, _ in model.named_parameters()]
    names += [name for name, _ in model.named_buffers() if name in persistent]
    return [name for name in names if name not in index]


def _file_index(folder: Path) -> dict[str, _FileTensor]:
    """Every tensor of the safetensors files in ``folder``: its file, shape and dtype (from the headers only)."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelError(
            f"{folder} holds no .safetensors files, which sharded loading reads; set `model.load_strategy: full` "
            "to load it with transformers on every rank"
        )
    index: dict[str, _FileTensor] = {}
    for file in files:
        with safe_open(file, framework="pt") as handle:
            for name in handle.keys():  # noqa: SIM118 (safe_open has no __iter__)
                piece = handle.get_slice(name)
                index[name] = _FileTensor(file, tuple(piece.get_shape()), piece.get_dtype())
    return index


class _CountingPlanner(DefaultLoadPlanner):
    """DCP's default load planner, counting the bytes of file data each read brings in."""

    def __init__(self, bytes_per_element: Mapping[str, float]) -> None:
        super().__init__()
        self.bytes_per_element = bytes_per_element
        self.bytes_read = 0.0

    def commit_tensor(self, read_item, tensor: torch.Tensor) -> None:
        """Count the slice just read (its element count times the file's bytes per element)."""
        name = read_item.dest_index.fqn
        self.bytes_read += math.prod(read_item.lengths) * self.bytes_per_element.get(name, tensor.element_size())
        super().commit_tensor(read_item, tensor)


def _broadcast_from_rank0(targets: Mapping[str, torch.Tensor], index: Mapping[str, _FileTensor]) -> int:
    """Rank 0 reads each tensor whole and broadcasts it; every rank keeps its part. Returns this rank's bytes read."""
    rank = dist.get_rank()
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    read = 0
    handles: dict[Path, object] = {}
    with contextlib.ExitStack() as stack:
        for name in sorted(targets):
            entry = index[name]
            if rank == 0:
                if entry.file not in handles:
                    handles[entry.file] = stack.enter_context(safe_open(entry.file, framework="pt"))
                full = handles[entry.file].get_tensor(name).to(device)
                read += entry.nbytes
            else:
                full = torch.empty(entry.shape, dtype=entry.torch_dtype, device=device)
            dist.broadcast(full, src=0)
            _copy_full_into(targets[name], full)
    return read


def _check_filled(model: torch.nn.Module, filled: set[str]) -> None:
    """Raise ModelError for a parameter nothing filled, or a float buffer still NaN."""
    empty = [name for name, _ in model.named_parameters() if name not in filled]
    empty += [
        name
        for name, buffer in model.named_buffers()
        if name not in filled and buffer.is_floating_point() and bool(torch.isnan(_local(buffer)).any())
    ]
    if empty:
        shown = ", ".join(empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
        raise ModelError(
            f"building the model on the meta device left {shown} without values: the weight files do not hold them "
            "and the model's initialisation could not be repeated shard by shard. Set `model.load_strategy: full` "
            "to build the whole model on every rank before sharding."
        )
