"""Consolidated Hugging Face weights: the safetensors files and index that ``from_pretrained`` reads."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch.distributed.tensor import DTensor, distribute_tensor

from automodel.checkpoint.durable import new_file_mode
from automodel.checkpoint.errors import CheckpointError, brief, describe_keys
from automodel.checkpoint.options import parse_max_shard_size, parse_save_dtype
from automodel.checkpoint.process_group import rank
from automodel.checkpoint.sharding import INDEX_FILE, SHARD_GLOB, SINGLE_FILE, ShardPlan, plan_shards
from automodel.checkpoint.tensors import materialize, unique_entries

_SHARD_NAME = re.compile(r"model-(\d{5})-of-(\d{5})\.safetensors")


class IncompatibleKeys(NamedTuple):
    """What ``load_hf_weights_into`` found: module keys the files lack, and file keys the module lacks."""

    missing_keys: list[str]
    unexpected_keys: list[str]


def save_hf_weights(
    state_dict: Mapping[str, torch.Tensor],
    out_dir: str | os.PathLike[str],
    *,
    max_shard_size: str | int = "5GB",
    save_dtype: str | torch.dtype | None = None,
) -> list[Path]:
    """Write a state dict as the safetensors files ``from_pretrained`` loads, named as transformers names them.

    Everything fits in ``max_shard_size``: one ``model.safetensors``. Otherwise
    ``model-0000K-of-0000N.safetensors`` and ``model.safetensors.index.json``
    (``{"metadata": {"total_size"}, "weight_map"}``). Tensors that are the same data (tied
    weights) are written once under the first name. Tensors are cast, gathered (a DTensor
    through ``full_tensor()``) and moved to the CPU one at a time and written file by file,
    so the extra memory is about one file. With torch.distributed initialized, every rank
    must call this (they take part in the gathers) and only rank 0 writes. Files get the
    permission bits a plain ``open()`` gives (0o644 under umask 022; an overwritten file keeps
    its own), although safetensors writes through a private temporary file.

    Args:
        state_dict: name to tensor or DTensor, in the order the files should follow.
        out_dir: the folder to write into; weight files of an earlier save there are replaced.
        max_shard_size: the largest file, "5GB", "500MB", "100KB" or bytes (a larger tensor gets a file of its own).
        save_dtype: "bf16", "fp16", "fp32" or a torch dtype to cast floating tensors to; None keeps each dtype.

    Returns:
        The weight files, in order (on every rank, though only rank 0 writes them).
    """
    max_bytes = parse_max_shard_size(max_shard_size)
    dtype = parse_save_dtype(save_dtype)
    out_dir = Path(out_dir)
    kept, _ = unique_entries(state_dict)
    not_tensors = [name for name, value in kept.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(
            f"state_dict entries {', '.join(not_tensors)} are not tensors, and safetensors files hold only tensors; "
            "leave them out of the state dict passed to save_hf_weights"
        )
    plan = plan_shards(kept, max_bytes, dtype)
    writer = rank() == 0
    if writer:
        out_dir.mkdir(parents=True, exist_ok=True)
        _remove_other_weight_files(out_dir, plan)
    for file_name, names in plan.files.items():
        shard = {}
        for name in names:
            tensor = kept[name]
            if writer or isinstance(tensor, DTensor):
                whole = materialize(tensor, dtype)
                if writer:
                    shard[name] = whole
        if writer:
            _save_shard(shard, out_dir / file_name)
        del shard
    if writer and len(plan.files) > 1:
        index = {"metadata": {"total_size": plan.total_size}, "weight_map": plan.weight_map}
        (out_dir / INDEX_FILE).write_text(json.dumps(index, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return [out_dir / name for name in plan.files]


def weight_files(model_dir: str | os.PathLike[str]) -> list[Path]:
    """Return the safetensors files of a model: one file; the files of an index; or ``model-*-of-N`` files without one.

    Raises:
        CheckpointError: the path does not exist, holds no weights, or a shard is missing.
    """
    path = Path(model_dir)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise CheckpointError(
            f"{path} does not exist; pass a model folder written by save_hf_weights or save_pretrained, "
            "or a .safetensors file"
        )
    if (path / SINGLE_FILE).is_file():
        return [path / SINGLE_FILE]
    if (path / INDEX_FILE).is_file():
        try:
            weight_map = json.loads((path / INDEX_FILE).read_text(encoding="utf-8"))["weight_map"]
            names = list(dict.fromkeys(weight_map.values()))
        except (ValueError, KeyError, AttributeError) as exc:
            raise CheckpointError(
                f"{path / INDEX_FILE} is not a safetensors index ({exc}); it needs a weight_map of tensor name to file"
            ) from None
        return _existing(path, names, f"named by {INDEX_FILE}")
    shards = sorted(p.name for p in path.glob(SHARD_GLOB) if _SHARD_NAME.fullmatch(p.name))
    if shards:
        count = int(_SHARD_NAME.fullmatch(shards[-1]).group(2))
        names = [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]
        return _existing(path, names, f"the shard names say there are {count}")
    raise CheckpointError(
        f"{path} holds no safetensors weights (no {SINGLE_FILE}, {INDEX_FILE} or model-0000K-of-0000N.safetensors); "
        "pass the model folder of a checkpoint (step_000500/model) or of save_pretrained"
    )


def load_hf_weights(model_dir: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read every tensor of a model folder (or one .safetensors file) into ``{name: CPU tensor}``."""
    state: dict[str, torch.Tensor] = {}
    for file in weight_files(model_dir):
        with _reading(file):
            state.update(load_file(file))
    return state


def load_hf_weights_into(
    module: torch.nn.Module, model_dir: str | os.PathLike[str], strict: bool = True
) -> IncompatibleKeys:
    """Copy the weights of a model folder into ``module``'s parameters and buffers, one tensor at a time.

    A tied parameter (``lm_head.weight`` sharing ``model.embed_tokens.weight``) counts as
    loaded when any name of its tie is in the files, as transformers saves only one. Values
    are cast to each parameter's dtype; a DTensor parameter receives its own shard.

    Args:
        module: the model to fill, its tensors already allocated (not on the meta device).
        model_dir: a model folder or one .safetensors file (see ``weight_files``).
        strict: raise when the files lack a module key or hold a key the module lacks.

    Returns:
        ``IncompatibleKeys(missing_keys, unexpected_keys)``, both empty when everything matched.

    Raises:
        CheckpointError: keys do not match (when ``strict``), a shape differs, or the module is on the meta device;
            nothing is copied then.
    """
    files = weight_files(model_dir)
    shapes: dict[str, tuple[int, ...]] = {}
    for file in files:
        with _reading(file), safe_open(file, framework="pt") as handle:
            shapes.update({name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()})  # noqa: SIM118
    targets = module.state_dict(keep_vars=True)
    _, aliases = unique_entries(targets)
    loaded_groups = {aliases.get(name, name) for name in targets if name in shapes}
    missing = [name for name in targets if aliases.get(name, name) not in loaded_groups]
    unexpected = [name for name in shapes if name not in targets]
    where = Path(model_dir)
    if strict and (missing or unexpected):
        parts = []
        if missing:
            parts.append(f"missing keys the module has: {describe_keys(missing, shapes)}")
        if unexpected:
            parts.append(f"unexpected keys the module lacks: {describe_keys(unexpected, targets)}")
        raise CheckpointError(
            f"{where} does not match {type(module).__name__}: {'; '.join(parts)}; load the weights of this "
            "architecture, or pass strict=False to load the matching keys only"
        )
    wrong = [
        f"{name} {shapes[name]} vs {tuple(t.shape)}"
        for name, t in targets.items()
        if name in shapes and shapes[name] != tuple(t.shape)
    ]
    if wrong:
        raise CheckpointError(
            f"{where} has tensors whose shapes differ from {type(module).__name__}'s (file vs module): "
            f"{', '.join(wrong[:5])}; the weights belong to a differently sized model"
        )
    if any(t.device.type == "meta" for t in targets.values()):
        raise CheckpointError(
            f"{type(module).__name__} has tensors on the meta device, which cannot receive {where}; "
            "allocate them first with module.to_empty(device=...)"
        )
    with torch.no_grad():
        for file in files:
            with _reading(file), safe_open(file, framework="pt") as handle:
                for name in handle.keys():  # noqa: SIM118
                    if name in targets:
                        _copy_into(targets[name], handle.get_tensor(name))
    return IncompatibleKeys(sorted(missing), sorted(unexpected))


def _save_shard(shard: dict[str, torch.Tensor], path: Path) -> None:
    """Write one safetensors file with the mode ``open()`` would give it.

    safetensors 0.8 writes a temporary file, always mode 0o600, and renames it over ``path``
    (safetensors issue #782), which would hide the weights from the user's group.
    """
    mode = path.stat().st_mode & 0o7777 if path.is_file() else new_file_mode()
    save_file(shard, path, metadata={"format": "pt"})
    os.chmod(path, mode)


@contextmanager
def _reading(file: Path) -> Iterator[None]:
    """Turn an unreadable weight file (truncated, corrupted, not safetensors) into a CheckpointError naming it."""
    try:
        yield
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(
            f"{file} cannot be read as safetensors weights ({brief(exc)}); it is truncated or corrupted: "
            "copy the model folder again, or use another checkpoint step"
        ) from None


def _copy_into(target: torch.Tensor, value: torch.Tensor) -> None:
    if isinstance(target, DTensor):
        value = distribute_tensor(value.to(target.device, target.dtype), target.device_mesh, target.placements)
    target.copy_(value)


def _existing(folder: Path, names: list[str], reason: str) -> list[Path]:
    absent = [name for name in names if not (folder / name).is_file()]
    if absent:
        raise CheckpointError(
            f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} missing from {folder} ({reason}); "
            "copy the complete model folder"
        )
    return [folder / name for name in names]


def _remove_other_weight_files(out_dir: Path, plan: ShardPlan) -> None:
    """Delete weight files of an earlier save that this one does not rewrite, so no loader mixes the two."""
    stale = [*out_dir.glob(SHARD_GLOB), out_dir / SINGLE_FILE, out_dir / INDEX_FILE]
    for path in stale:
        if path.is_file() and path.name not in plan.files and not (path.name == INDEX_FILE and len(plan.files) > 1):
            path.unlink()
