"""``AutoDiffusionPipeline``: a diffusers text-to-image pipeline set up for training one of its components.

The denoiser (the pipeline's ``transformer`` or ``unet``) is trained by default; every other
model component (VAE, text encoders) is frozen, kept in eval mode and never given gradients.
``from_pretrained`` loads a diffusers folder or hub id; ``from_config`` builds the denoiser
with random weights from a config (pre-training) and takes the other components from a
diffusers folder.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import diffusers
import torch

from automodel.models.auto_model import _seeded
from automodel.models.credentials import hub_kwargs
from automodel.models.dtypes import resolve_torch_dtype
from automodel.models.errors import ModelError
from automodel.models.sources import load_errors_explained, pretrained_source

DENOISERS = ("transformer", "unet")
MODEL_INDEX = "model_index.json"
COMPONENT_CHOICES = ("all", "denoiser")


@dataclass
class DiffusionPipelineForTraining:
    """A diffusers pipeline with the names of its trained components.

    Attributes:
        pipeline: the diffusers pipeline; components not loaded (``components="denoiser"``) are None.
        denoiser_name: ``"transformer"`` or ``"unet"``.
        train_components: the components whose parameters train.
        source: the diffusers folder or hub id whose files the frozen components come from.
        compute_dtype: the dtype the frozen components run in and the denoiser's inputs are cast to.
    """

    pipeline: Any
    denoiser_name: str
    train_components: tuple[str, ...]
    source: str
    compute_dtype: torch.dtype

    @property
    def denoiser(self) -> torch.nn.Module:
        """The pipeline's denoiser module (transformer or UNet)."""
        return getattr(self.pipeline, self.denoiser_name)

    @property
    def frozen_components(self) -> list[str]:
        """The names of the loaded model components that do not train."""
        return [
            name
            for name, value in self.pipeline.components.items()
            if _is_module(value) and name not in self.train_components
        ]


class AutoDiffusionPipeline:
    """Builds ``DiffusionPipelineForTraining`` objects; see the module docstring."""

    @staticmethod
    def from_pretrained(
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        train_components: Sequence[str] | None = None,
        torch_dtype: str | torch.dtype = "float32",
        compute_dtype: str | torch.dtype | None = None,
        components: str = "all",
        **kwargs: Any,
    ) -> DiffusionPipelineForTraining:
        """Load a diffusers pipeline folder or hub id for training.

        Args:
            pretrained_model_name_or_path: a folder holding ``model_index.json``, or a hub id.
            train_components: the components that train (default: the denoiser alone).
            torch_dtype: the dtype of the trained components' weights (keep float32 to train them).
            compute_dtype: the dtype of the frozen components (default: ``torch_dtype``).
            components: ``all``, or ``denoiser`` to load only the denoiser and the scheduler
                (training from a latent cache needs neither VAE nor text encoders).
            **kwargs: passed to ``DiffusionPipeline.from_pretrained`` (``revision``, ``variant``, ``token``).

        Returns:
            The pipeline with its frozen components in eval mode, without gradients.

        Raises:
            ModelError: the folder is not a diffusers pipeline, a component name is unknown, or a bad dtype.
        """
        source = _pipeline_source(pretrained_model_name_or_path)
        index = read_model_index(source, kwargs)
        denoiser_name = _denoiser_name(index, source)
        skipped = _skipped_components(index, denoiser_name, components)
        return _finish(
            _load_pipeline(source, {**skipped, **hub_kwargs(kwargs, "pipeline")}),
            denoiser_name,
            train_components,
            source,
            torch_dtype,
            compute_dtype,
        )

    @staticmethod
    def from_config(
        components_from: str | os.PathLike,
        *,
        denoiser_config: Mapping[str, Any] | None = None,
        seed: int | None = None,
        train_components: Sequence[str] | None = None,
        torch_dtype: str | torch.dtype = "float32",
        compute_dtype: str | torch.dtype | None = None,
        components: str = "all",
        **kwargs: Any,
    ) -> DiffusionPipelineForTraining:
        """Build the denoiser with random weights and take the other components from a diffusers pipeline.

        Args:
            components_from: a diffusers folder or hub id with the VAE, text encoders, tokenizers
                and scheduler; its denoiser's ``config.json`` is the starting config.
            denoiser_config: keys that replace those of the denoiser's config (``num_layers``, ...).
            seed: seeds the random initialisation (the global RNG is left as it was).
            train_components, torch_dtype, compute_dtype, components, kwargs: as for ``from_pretrained``.

        Returns:
            The pipeline with a freshly initialised denoiser.

        Raises:
            ModelError: as for ``from_pretrained``, or a denoiser config key the denoiser class does not take.
        """
        source = _pipeline_source(components_from)
        index = read_model_index(source, kwargs)
        denoiser_name = _denoiser_name(index, source)
        library, class_name = index[denoiser_name]
        denoiser_class = getattr(diffusers, class_name, None)
        if library != "diffusers" or denoiser_class is None:
            raise ModelError(
                f"{source}: the {denoiser_name} class {library}.{class_name} is not a diffusers model class"
            )
        with load_errors_explained(source, denoiser_name):
            config = dict(denoiser_class.load_config(source, subfolder=denoiser_name, **hub_kwargs(kwargs, "pipeline")))
        config.update(denoiser_config or {})
        unknown = sorted(set(denoiser_config or {}) - set(_init_arguments(denoiser_class)))
        if unknown:
            raise ModelError(
                f"denoiser_config has {', '.join(unknown)}, which {class_name} does not take; "
                f"it takes {', '.join(sorted(_init_arguments(denoiser_class)))}"
            )
        dtype = resolve_torch_dtype(torch_dtype)
        with _seeded(seed):
            denoiser = denoiser_class.from_config(config)
        if denoiser.dtype != dtype:
            denoiser = denoiser.to(dtype)
        skipped = _skipped_components(index, denoiser_name, components)
        pipeline = _load_pipeline(source, {**skipped, denoiser_name: denoiser, **hub_kwargs(kwargs, "pipeline")})
        return _finish(pipeline, denoiser_name, train_components, source, torch_dtype, compute_dtype)


def read_model_index(source: str, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Return the ``model_index.json`` of a diffusers folder or hub id as a dict.

    Raises:
        ModelError: the file cannot be found or is not a JSON object naming components.
    """
    folder = Path(source)
    if folder.is_dir():
        file = folder / MODEL_INDEX
    else:
        from huggingface_hub import hf_hub_download

        with load_errors_explained(source, "pipeline"):
            file = Path(hf_hub_download(source, MODEL_INDEX, **hub_kwargs(kwargs or {}, "pipeline")))
    try:
        index = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(
            f"{file} cannot be read as JSON ({exc}); it must be the model_index.json diffusers writes"
        ) from None
    if not isinstance(index, dict) or "_class_name" not in index:
        raise ModelError(f"{file} is not a diffusers model_index.json (no _class_name); point at a pipeline folder")
    return index


def _pipeline_source(name_or_path: str | os.PathLike) -> str:
    """The folder or hub id of a diffusers pipeline; a folder without model_index.json is a ModelError."""
    try:
        return pretrained_source(name_or_path, needs_one_of=(MODEL_INDEX,))
    except ModelError as error:
        raise ModelError(
            f"{error} A diffusers pipeline folder holds model_index.json and one subfolder per component "
            "(what DiffusionPipeline.save_pretrained writes)."
        ) from None


def _denoiser_name(index: Mapping[str, Any], source: str) -> str:
    """The denoiser component of a pipeline: its ``transformer`` or ``unet``."""
    for name in DENOISERS:
        entry = index.get(name)
        if isinstance(entry, list) and entry and entry[0] is not None:
            return name
    raise ModelError(f"the diffusers pipeline {source} has no transformer or unet to train ({index['_class_name']})")


def _skipped_components(index: Mapping[str, Any], denoiser_name: str, components: str) -> dict[str, None]:
    """``{name: None}`` for the components ``components="denoiser"`` leaves unloaded."""
    if components not in COMPONENT_CHOICES:
        raise ModelError(f"components is {components!r}; use one of {', '.join(COMPONENT_CHOICES)}")
    if components == "all":
        return {}
    kept = {denoiser_name, "scheduler"}
    return {
        name: None
        for name, entry in index.items()
        if not name.startswith("_") and isinstance(entry, list) and name not in kept
    }


def _load_pipeline(source: str, passed: dict[str, Any]) -> Any:
    """``DiffusionPipeline.from_pretrained(source, **passed)``, with load errors explained."""
    with load_errors_explained(source, "pipeline"):
        return diffusers.DiffusionPipeline.from_pretrained(source, **passed)


def _finish(
    pipeline: Any,
    denoiser_name: str,
    train_components: Sequence[str] | None,
    source: str,
    torch_dtype: str | torch.dtype,
    compute_dtype: str | torch.dtype | None,
) -> DiffusionPipelineForTraining:
    """Freeze every component but ``train_components`` and cast the frozen ones to ``compute_dtype``."""
    trained = tuple(train_components or (denoiser_name,))
    modules = {name: value for name, value in pipeline.components.items() if _is_module(value)}
    unknown = [name for name in trained if name not in modules]
    if unknown:
        raise ModelError(
            f"train_components names {', '.join(unknown)}, which this pipeline has not loaded; "
            f"its model components are {', '.join(sorted(modules))}"
        )
    weights = resolve_torch_dtype(torch_dtype)
    compute = resolve_torch_dtype(compute_dtype) if compute_dtype is not None else weights
    for name, module in modules.items():
        train = name in trained
        module.requires_grad_(train)
        module.train(train)
        dtype = weights if train else compute
        if next(module.parameters()).dtype != dtype:
            module.to(dtype)
    return DiffusionPipelineForTraining(pipeline, denoiser_name, trained, source, compute)


def _is_module(value: Any) -> bool:
    return isinstance(value, torch.nn.Module)


def _init_arguments(cls: type) -> list[str]:
    return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
