"""Adapters on disk in the Hugging Face PEFT format: ``adapter_config.json`` + ``adapter_model.safetensors``.

Keys are the ones ``peft`` writes: ``base_model.model.<path>.lora_A.weight``, ``...lora_B.weight`` and,
for DoRA, ``...lora_magnitude_vector``; so ``peft.PeftModel.from_pretrained(base, adapter_dir)``
loads what :func:`save_adapter` writes, and :func:`load_adapter` reads what ``save_pretrained`` writes.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from automodel.peft.errors import PeftError
from automodel.peft.lora.config import LoRAConfig
from automodel.peft.lora.layer import LoRALinear
from automodel.peft.lora.model import apply_lora, lora_modules
from automodel.peft.targets import matches

CONFIG_NAME = "adapter_config.json"
WEIGHTS_NAME = "adapter_model.safetensors"
KEY_PREFIX = "base_model.model."
KEY_SUFFIXES = {".lora_A.weight": "lora_A", ".lora_B.weight": "lora_B", ".lora_magnitude_vector": "magnitude"}
TASK_TYPES = ("CAUSAL_LM", "SEQ_CLS", "SEQ_2_SEQ_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION")
UNSUPPORTED_WHEN_SET = (
    "modules_to_save",
    "rank_pattern",
    "alpha_pattern",
    "layer_replication",
    "trainable_token_indices",
    "target_parameters",
    "fan_in_fan_out",
    "lora_bias",
    "use_qalora",
)


def adapter_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Return the model's adapter tensors under HF PEFT key names, whole and on the CPU.

    Sharded adapters (DTensors under FSDP2 or tensor parallelism) are gathered with
    ``full_tensor()``, a collective: every rank must call this together. Pass the result
    to ``save_adapter(..., state=...)`` on the rank that writes.
    """
    return _adapter_state(lora_modules(model))


def portable_base_reference(name_or_path: str | os.PathLike[str] | None) -> str | None:
    """Return what an adapter should record as its base model: the absolute path of a local directory,
    anything else (a hub id, or None) unchanged.

    peft and transformers resolve a relative ``base_model_name_or_path`` against the working
    directory of whoever loads the adapter, so a relative path breaks from any other directory.
    An absolute path keeps working from everywhere on this machine, and when the adapter moves;
    it does not survive moving the base model itself (then pass the base explicitly:
    ``PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), adapter_dir)``).
    """
    if name_or_path is None:
        return None
    path = Path(name_or_path).expanduser()
    return str(path.resolve()) if path.is_dir() else str(name_or_path)


def save_adapter(
    model: nn.Module,
    out_dir: str | Path,
    base_model_name_or_path: str | None = None,
    task_type: str | None = "CAUSAL_LM",
    state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write the model's LoRA adapters to ``out_dir`` in the HF PEFT format and return the directory.

    ``base_model_name_or_path`` defaults to ``model.config.name_or_path`` when the model has one.
    It is recorded as ``portable_base_reference`` makes it: a local directory as its absolute path,
    a hub id as given, so that ``AutoPeftModelForCausalLM.from_pretrained(out_dir)`` works from any
    working directory and after the adapter folder moves.
    ``task_type`` is peft's (``CAUSAL_LM``, ``SEQ_CLS``, ... or None). ``state`` is the
    output of ``adapter_state_dict`` when the adapters are sharded over several processes
    (default: read from ``model``, which must then hold whole tensors).
    """
    if task_type is not None and task_type not in TASK_TYPES:
        raise PeftError(f"task_type must be one of {TASK_TYPES} or None, got {task_type!r}.")
    modules = lora_modules(model)
    if not modules:
        raise PeftError(f"{type(model).__name__} has no LoRA adapters to save; add them with apply_lora first.")
    first = next(iter(modules.values()))
    for path, module in modules.items():
        if _settings(module) != _settings(first):
            raise PeftError(
                f"{path} has adapter settings {_settings(module)} but {next(iter(modules))} has {_settings(first)}; "
                "one HF PEFT adapter_config.json holds one rank, alpha, dropout and variant."
            )
    target_modules, exclude_modules = _peft_targets(model, list(modules))
    if base_model_name_or_path is None:
        base_model_name_or_path = getattr(getattr(model, "config", None), "name_or_path", None) or None
    base_model_name_or_path = portable_base_reference(base_model_name_or_path)
    config = {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base_model_name_or_path,
        "revision": None,
        "r": first.r,
        "lora_alpha": first.alpha,
        "lora_dropout": first.dropout_p,
        "target_modules": target_modules,
        "exclude_modules": exclude_modules,
        "use_rslora": first.use_rslora,
        "use_dora": first.use_dora,
        # peft has no all-zeros init; the weights file holds the values either way.
        "init_lora_weights": "gaussian" if first.init == "gaussian" else True,
        "bias": "none",
        "lora_bias": False,
        "fan_in_fan_out": False,
        "inference_mode": True,
        "modules_to_save": None,
        "layers_to_transform": None,
        "layers_pattern": None,
        "rank_pattern": {},
        "alpha_pattern": {},
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file(_adapter_state(modules) if state is None else state, str(out / WEIGHTS_NAME), metadata={"format": "pt"})
    (out / CONFIG_NAME).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return out


def load_adapter(model: nn.Module, adapter_dir: str | Path) -> nn.Module:
    """Apply the LoRA/DoRA adapter saved in ``adapter_dir`` (by save_adapter or peft) onto ``model``; return it.

    Rank, alpha, rsLoRA, DoRA and dropout come from ``adapter_config.json``; the adapted modules are
    exactly those with weights in ``adapter_model.safetensors``. Raises PeftError for a missing or
    unreadable adapter, settings this package does not implement, or weights that do not fit the model.
    """
    folder = Path(adapter_dir)
    if lora_modules(model):
        raise PeftError("The model already has LoRA adapters; call remove_lora(model) before loading an adapter.")
    config = _read_config(folder)
    weights = _read_weights(folder, config)
    _check_fits(model, weights, config["r"], folder)
    lora = LoRAConfig(
        dim=config["r"],
        alpha=config.get("lora_alpha", 8),
        dropout=config.get("lora_dropout", 0.0),
        use_rslora=bool(config.get("use_rslora", False)),
        use_dora=bool(config.get("use_dora", False)),
        target_modules=["re:" + "|".join(re.escape(path) for path in weights)],
        init="zeros",
    )
    apply_lora(model, lora)
    modules = lora_modules(model)
    with torch.no_grad():
        for path, tensors in weights.items():
            module = modules[path]
            module.lora_A.weight.copy_(tensors["lora_A"])
            module.lora_B.weight.copy_(tensors["lora_B"])
            if module.use_dora:
                module.lora_magnitude_vector.copy_(tensors["magnitude"])
    return model


def _settings(module: LoRALinear) -> tuple:
    """What one adapter_config.json records about a layer: r, alpha, dropout, rsLoRA, DoRA."""
    return module.r, module.alpha, module.dropout_p, module.use_rslora, module.use_dora


def _peft_targets(model: nn.Module, adapted: list[str]) -> tuple[list[str] | str, list[str] | None]:
    """``target_modules`` and ``exclude_modules`` for which peft selects exactly the ``adapted`` paths.

    Preferred: the adapted short names, plus the full paths of other modules with those names as
    exclusions; when peft's suffix matching cannot express the set that way, one regex of the paths.
    """
    adapted_set = set(adapted)
    paths = [path for path, _ in model.named_modules() if path and not _inside(path, adapted_set)]
    names = sorted({path.rsplit(".", 1)[-1] for path in adapted})
    others = [path for path in paths if path not in adapted_set and any(matches(name, path) for name in names)]
    selected = {
        path
        for path in paths
        if any(matches(name, path) for name in names) and not any(matches(other, path) for other in others)
    }
    if selected == adapted_set:
        return names, others or None
    return "|".join(re.escape(path) for path in adapted), None


def _inside(path: str, parents: set[str]) -> bool:
    """True when a proper parent of ``path`` is in ``parents`` (a LoRALinear's own children)."""
    parts = path.split(".")
    return any(".".join(parts[:end]) in parents for end in range(1, len(parts)))


def _adapter_state(modules: dict[str, LoRALinear]) -> dict[str, torch.Tensor]:
    """The adapter tensors under peft's key names, on the CPU."""
    state = {}
    for path, module in modules.items():
        tensors = {"lora_A.weight": module.lora_A.weight, "lora_B.weight": module.lora_B.weight}
        if module.use_dora:
            tensors["lora_magnitude_vector"] = module.lora_magnitude_vector
        for name, tensor in tensors.items():
            whole = tensor.full_tensor() if hasattr(tensor, "full_tensor") else tensor
            state[f"{KEY_PREFIX}{path}.{name}"] = whole.detach().to("cpu").contiguous()
    return state


def _read_config(folder: Path) -> dict:
    """adapter_config.json of ``folder``, checked to describe a LoRA adapter this package can apply."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise PeftError(f"{folder} is not an adapter directory: {CONFIG_NAME} is missing.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise PeftError(f"{path} is not valid JSON ({error}).") from error
    if config.get("peft_type") != "LORA":
        raise PeftError(f"{path}: peft_type is {config.get('peft_type')!r}; only LORA adapters can be loaded.")
    if "r" not in config:
        raise PeftError(f"{path} has no `r` (the LoRA rank).")
    unsupported = [key for key in UNSUPPORTED_WHEN_SET if config.get(key)]
    if config.get("bias", "none") != "none":
        unsupported.append("bias")
    if unsupported:
        raise PeftError(
            f"{path} sets {', '.join(unsupported)}, which automodel.peft does not implement; it loads plain "
            "LoRA, rsLoRA and DoRA adapters on nn.Linear modules. Load this one with peft instead."
        )
    return config


def _read_weights(folder: Path, config: dict) -> dict[str, dict[str, torch.Tensor]]:
    """adapter_model.safetensors of ``folder`` grouped by module path: {path: {lora_A, lora_B[, magnitude]}}."""
    path = folder / WEIGHTS_NAME
    if not path.is_file():
        pickled = (
            " (adapter_model.bin is a pickle, which is never loaded)" if (folder / "adapter_model.bin").exists() else ""
        )
        raise PeftError(f"{folder} has no {WEIGHTS_NAME}{pickled}.")
    grouped: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in load_file(str(path)).items():
        suffix = next((s for s in KEY_SUFFIXES if key.startswith(KEY_PREFIX) and key.endswith(s)), None)
        if suffix is None:
            raise PeftError(
                f"{path}: unexpected key `{key}`; automodel.peft reads LoRA/DoRA weights of nn.Linear modules "
                f"(`{KEY_PREFIX}<module>.lora_A.weight`, `.lora_B.weight`, `.lora_magnitude_vector`)."
            )
        grouped.setdefault(key[len(KEY_PREFIX) : -len(suffix)], {})[KEY_SUFFIXES[suffix]] = tensor
    if not grouped:
        raise PeftError(f"{path} holds no adapter weights.")
    wanted = {"lora_A", "lora_B", "magnitude"} if config.get("use_dora") else {"lora_A", "lora_B"}
    for module_path, tensors in grouped.items():
        if set(tensors) != wanted:
            raise PeftError(
                f"{path}: `{module_path}` has {sorted(tensors)} but use_dora={bool(config.get('use_dora'))} "
                f"needs {sorted(wanted)}."
            )
    return grouped


def _check_fits(model: nn.Module, weights: dict[str, dict[str, torch.Tensor]], rank: int, folder: Path) -> None:
    """PeftError unless every adapted path is an nn.Linear of ``model`` and its weights have rank ``rank``."""
    linears = {path: module for path, module in model.named_modules() if isinstance(module, nn.Linear)}
    for path, tensors in weights.items():
        if path not in linears:
            raise PeftError(
                f"{folder / WEIGHTS_NAME} has weights for `{path}`, which is not an nn.Linear module of "
                f"{type(model).__name__}; was the adapter trained on another architecture?"
            )
        expected = {
            "lora_A": (rank, linears[path].in_features),
            "lora_B": (linears[path].out_features, rank),
            "magnitude": (linears[path].out_features,),
        }
        for name, tensor in tensors.items():
            if tuple(tensor.shape) != expected[name]:
                raise PeftError(
                    f"{folder / WEIGHTS_NAME}: the {name} weight of `{path}` has shape {tuple(tensor.shape)} "
                    f"but this model with r={rank} needs {expected[name]}; is `r` right, and is this the model "
                    "the adapter was trained for?"
                )
