"""Model and optimizer state for resuming, written and read with torch.distributed.checkpoint (DCP).

Each rank writes only its own shards, and DCP reshards on load, so a run saved on N
processes resumes on M. Without a process group it runs as a single process.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint import FileSystemWriter
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.metadata import Metadata, TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from automodel.checkpoint.errors import CheckpointError, brief, describe_keys
from automodel.checkpoint.safe_dcp import SafeFileSystemReader, SafeLoadPlanner

# DCP warns on every single-process save and load; running without a process group is intended here.
warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")


def capture_resume_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> dict[str, Any]:
    """Return ``{"model": ..., "optim": ...}`` (no "optim" without an optimizer) as DCP saves and loads it.

    The tensors are the live ones (DTensors for sharded models), not copies.
    """
    if optimizer is None:
        return {"model": get_model_state_dict(model)}
    model_state, optim_state = get_state_dict(model, optimizer)
    return {"model": model_state, "optim": optim_state}


def write_resume_state(state: dict[str, Any], folder: Path, group: Any) -> None:
    """Write ``state`` to ``folder`` with DCP; every rank of ``group`` (None: this process alone) must call it.

    DCP flushes each file to the disk before returning. A failure on any rank is raised on
    every rank: the first rank's OSError itself (so the caller can name the folder), else DCP's
    CheckpointException.
    """
    try:
        dcp.save(state, storage_writer=FileSystemWriter(folder), process_group=group, no_dist=group is None)
    except CheckpointException as exc:
        cause = _first_failure(exc)
        if isinstance(cause, OSError):
            raise cause from None
        raise


def restore_resume_state(
    folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, group: Any
) -> None:
    """Load ``folder`` into ``model`` (and ``optimizer``) exactly, resharding to this run's layout.

    Raises:
        CheckpointError: the folder's tensors do not match the model, it holds no optimizer state,
            or its files cannot be read (truncated, corrupted, not written by this package).
    """
    try:
        _restore(folder, model, optimizer, group)
        return
    except CheckpointError:
        raise
    except CheckpointException as exc:
        cause = _first_failure(exc)
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, IndexError, AttributeError, EOFError) as exc:
        cause = exc
    if isinstance(cause, (MemoryError, torch.OutOfMemoryError)):  # the machine, not the checkpoint
        raise cause
    detail = str(cause) if isinstance(cause, CheckpointError) else brief(cause)
    raise CheckpointError(
        f"{folder} cannot be read as model and optimizer state ({detail}); the checkpoint is corrupted or was not "
        "written by automodel-checkpoint: restore from another step"
    ) from None


def _restore(folder: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None, group: Any) -> None:
    state = capture_resume_state(model, optimizer)
    metadata = SafeFileSystemReader(folder).read_metadata()
    _check_matches(metadata, state, folder, model)
    if "optim" in state:
        _drop_unsaved_parameter_state(state["optim"], metadata)
    dcp.load(
        state,
        storage_reader=SafeFileSystemReader(folder),
        planner=SafeLoadPlanner(),
        process_group=group,
        no_dist=group is None,
    )
    if optimizer is None:
        set_model_state_dict(model, state["model"])
    else:
        # Not strict: parameters the saved run never stepped have no state (the model keys were checked above).
        options = StateDictOptions(strict=False)
        set_state_dict(
            model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"], options=options
        )


def _first_failure(exc: CheckpointException) -> BaseException:
    """The exception of the lowest failed rank inside DCP's CheckpointException."""
    failures = exc.failures
    return failures[min(failures)][0] if failures else exc


def _drop_unsaved_parameter_state(optim_state: dict[str, Any], metadata: Metadata) -> None:
    """Forget the fresh optimizer state of parameters the saved run never stepped.

    A trainable parameter that never got a gradient (CLIP's post-layernorm in a Llava, a
    head a loss leaves out) has no optimizer state in the checkpoint, while the optimizer
    being restored into has state for every trainable parameter. Those parameters resume
    with no state, as they were when saved.
    """
    saved = {
        key.removeprefix("optim.state.").rsplit(".", 1)[0]
        for key in metadata.state_dict_metadata
        if key.startswith("optim.state.")
    }
    per_parameter = optim_state.get("state", {})
    for name in [name for name in per_parameter if name not in saved]:
        del per_parameter[name]


def _check_matches(metadata: Metadata, state: dict[str, Any], folder: Path, model: torch.nn.Module) -> None:
    saved = {
        key.removeprefix("model."): entry.size
        for key, entry in metadata.state_dict_metadata.items()
        if key.startswith("model.") and isinstance(entry, TensorStorageMetadata)
    }
    current = {key: tuple(value.shape) for key, value in state["model"].items() if isinstance(value, torch.Tensor)}
    missing, unexpected = current.keys() - saved.keys(), saved.keys() - current.keys()
    name = type(model).__name__
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"it lacks {describe_keys(missing, saved)}")
        if unexpected:
            parts.append(f"it has {describe_keys(unexpected, current)}, which the model lacks")
        raise CheckpointError(
            f"{folder} holds the state of a different model than this {name}: {'; '.join(parts)}; "
            "restore_from a checkpoint of this model, or set restore_from: null to start fresh"
        )
    wrong = [f"{k} {tuple(saved[k])} vs {current[k]}" for k in current if tuple(saved[k]) != current[k]]
    if wrong:
        raise CheckpointError(
            f"{folder} holds tensors shaped differently from this {name} (saved vs current): "
            f"{', '.join(wrong[:5])}; restore_from a checkpoint of the same model size"
        )
    if "optim" in state and not any(key.startswith("optim.") for key in metadata.state_dict_metadata):
        raise CheckpointError(
            f"{folder} holds no optimizer state (it was saved without an optimizer); "
            "load it without optimizer= to restore the model alone"
        )
