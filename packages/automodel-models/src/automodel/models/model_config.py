"""Build a transformers config from what a user writes: a dict, a config.json path, or a config object."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import transformers
from transformers import AutoConfig, PretrainedConfig
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_CAUSAL_LM_MAPPING,
    MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
    MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING,
    MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
)

from automodel.models.credentials import check_no_credentials
from automodel.models.errors import ModelError, closest_names

_REMOTE_CODE_ADVICE = (
    "; for a model with its own code, pass the config from "
    "transformers.AutoConfig.from_pretrained(path, trust_remote_code=True)"
)

ConfigSource = Mapping[str, Any] | str | os.PathLike | PretrainedConfig


def build_model_config(config: ConfigSource, **overrides: Any) -> PretrainedConfig:
    """Return a new transformers config built from ``config`` with ``overrides`` applied.

    Args:
        config: a mapping holding ``model_type`` plus fields (``{"model_type": "llama",
            "hidden_size": 64}``); a path to a directory holding ``config.json`` or to a
            ``.json`` file; or a ``transformers.PretrainedConfig``, which is copied, never changed.
        **overrides: fields set on top of ``config`` (``num_hidden_layers=1``). Fields the
            config class does not define are kept as attributes, as transformers does.

    Returns:
        An instance of the config class transformers registers for the ``model_type``.

    Raises:
        ModelError: when the path does not exist or is not a JSON object, the fields lack
            ``model_type``, or transformers does not know the ``model_type`` (naming the closest).
    """
    check_no_credentials(overrides, "model config")
    if isinstance(config, PretrainedConfig):
        built = copy.deepcopy(config)
        for name, value in overrides.items():
            setattr(built, name, value)
        return built
    if isinstance(config, Mapping):
        fields, where = dict(config), "the config dict"
    elif isinstance(config, (str, os.PathLike)):
        file = _config_file(config)
        fields, where = _read_json_object(file), str(file)
    else:
        raise ModelError(
            f"config must be a dict with `model_type`, a path to config.json or a transformers "
            f"PretrainedConfig, not {type(config).__name__} ({config!r})."
        )
    fields.update(overrides)
    model_type = fields.pop("model_type", None)
    if model_type is None:
        raise ModelError(f'{where} has no `model_type`; add one such as `"model_type": "llama"`.')
    if model_type not in CONFIG_MAPPING:
        problem = f"model_type `{model_type}` in {where} is not a model type transformers knows"
        advice = _REMOTE_CODE_ADVICE if "auto_map" in fields else ""
        raise _unknown_type_error(model_type, CONFIG_MAPPING.keys(), "model types", problem, advice)
    return AutoConfig.for_model(model_type, **fields)


def _unknown_type_error(
    model_type: Any, known: Collection[str], kind: str, problem: str, advice: str = ""
) -> ModelError:
    """Return the ModelError for an unknown ``model_type``: ``problem``, the closest ``kind``, then ``advice``."""
    close = closest_names(str(model_type), known)
    hint = f"the closest {kind} are {', '.join(f'`{name}`' for name in close)}"
    if not close:
        hint = f"none of its {len(known)} {kind} is close"
    return ModelError(f"{problem} (transformers {transformers.__version__}); {hint}{advice}.")


@dataclass(frozen=True)
class ModelTask:
    """A kind of model: the transformers auto class building it, the config classes it takes, a label for messages."""

    auto_class: type
    mapping: Mapping[type[PretrainedConfig], Any]
    model_type_names: Mapping[str, str]
    label: str


CAUSAL_LM = ModelTask(
    transformers.AutoModelForCausalLM, MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, "causal-LM"
)
IMAGE_TEXT_TO_TEXT = ModelTask(
    transformers.AutoModelForImageTextToText,
    MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING,
    MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES,
    "image-text-to-text",
)


def check_model_task(config: PretrainedConfig, task: ModelTask) -> None:
    """Raise ModelError unless transformers has a class of ``task`` for ``config``.

    Args:
        config: a built transformers config; a type registered with the task's auto class
            (``transformers.AutoModelForCausalLM.register``) or an ``auto_map`` naming remote code passes.
        task: ``CAUSAL_LM`` or ``IMAGE_TEXT_TO_TEXT``.

    Returns:
        None when the check passes.

    Raises:
        ModelError: naming the model type and the closest types the task has.
    """
    remote_code = getattr(config, "auto_map", None) or {}
    if type(config) in task.mapping or task.auto_class.__name__ in remote_code:
        return
    problem = f"model_type `{config.model_type}` has no {task.label} class"
    raise _unknown_type_error(config.model_type, task.model_type_names.keys(), f"{task.label} types", problem)


def _config_file(given: str | os.PathLike) -> Path:
    """Return the JSON file a config path names: the path itself or ``path/config.json``."""
    path = Path(given).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"directory {path} holds no config.json; point at a model directory or a .json file.")
        return path / "config.json"
    if not path.exists():
        raise ModelError(f"config path {os.fspath(given)} does not exist; check the path (relative to {Path.cwd()}).")
    return path


def _read_json_object(file: Path) -> dict[str, Any]:
    """Read a JSON object from ``file``; raise ModelError naming the file when it is not one."""
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"config file {file} is not valid JSON ({err}); give a config.json file.") from err
    if not isinstance(data, dict):
        raise ModelError(f"config file {file} holds a JSON {type(data).__name__}, not an object of config fields.")
    return data
