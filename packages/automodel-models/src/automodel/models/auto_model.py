"""AutoModelForCausalLM and AutoModelForImageTextToText: transformers' auto classes with automodel's defaults.

Both build plain transformers models with SDPA attention and a dtype fit for the device, and
turn every user mistake into a ``ModelError``; they share ``_from_pretrained`` and ``_from_config``.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from transformers import AutoConfig, GenerationConfig, PreTrainedModel

from automodel.models.credentials import hub_kwargs
from automodel.models.deferred_init import (
    LOAD_STRATEGIES,
    deferring,
    initializing_on_meta,
    not_recording,
    register_deferred,
)
from automodel.models.dtypes import resolve_torch_dtype
from automodel.models.errors import ModelError
from automodel.models.liger import apply_liger_kernel, liger_kernel_problem
from automodel.models.materialize import weights_absent_from_files
from automodel.models.model_config import (
    CAUSAL_LM,
    IMAGE_TEXT_TO_TEXT,
    ConfigSource,
    ModelTask,
    build_model_config,
    check_model_task,
)
from automodel.models.sources import load_errors_explained, pretrained_source, weights_snapshot


class AutoModelForCausalLM:
    """Build Hugging Face causal LMs with SDPA attention and a dtype fit for the device.

    The models returned are plain ``transformers`` models; nothing is wrapped or patched.
    Use it from Python or from YAML (``_target_: automodel.models.AutoModelForCausalLM.from_config``).
    """

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        torch_dtype: str | torch.dtype = "auto",
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        use_liger_kernel: bool = False,
        load_strategy: str = "sharded",
        **kwargs: Any,
    ) -> PreTrainedModel:
        """Load pretrained weights with ``transformers.AutoModelForCausalLM.from_pretrained``.

        Args:
            pretrained_model_name_or_path: a directory written by ``save_pretrained``, or a hub id
                (downloaded, or read from the local cache when ``HF_HUB_OFFLINE=1``).
            torch_dtype: see ``resolve_torch_dtype``; ``"auto"`` is bf16 on CUDA, fp32 on CPU
                (not the checkpoint's dtype, unlike transformers' ``"auto"``).
            attn_implementation: ``"sdpa"``, ``"eager"``, ``"flash_attention_2"``, ... as transformers takes it.
            trust_remote_code: allow model code shipped with the checkpoint to run.
            use_liger_kernel: swap RMSNorm, RoPE and SwiGLU for Liger's Triton kernels
                (``apply_liger_kernel``); CUDA and the liger-kernel package only.
            **kwargs: passed to transformers as they are (``revision``, ``device_map``, ...); a hub token
                (``token``, or ``hf_token``/``use_auth_token``) goes to the download only, and any other
                credential-looking keyword is refused, since transformers would save it in config.json.
            load_strategy: how a model built inside ``defer_weights()`` gets its weights after sharding:
                ``sharded`` (each rank reads by memory map only the slices it holds), ``rank0_broadcast``
                (rank 0 reads, every rank keeps its part) or ``full`` (built and loaded whole, as outside
                the block). Outside ``defer_weights()`` the model is loaded whole whatever it says.

        Returns:
            The model, on the CPU unless ``device_map`` says otherwise, in eval mode as transformers leaves it.

        Raises:
            ModelError: for a local path that does not exist or holds no config.json, a hub id that
                cannot be reached (offline or not found), a model type with no causal LM (naming
                the closest), an unsupported ``torch_dtype``, or ``use_liger_kernel`` where Liger cannot run.
        """
        _check_liger(use_liger_kernel)
        model = _from_pretrained(
            CAUSAL_LM,
            pretrained_model_name_or_path,
            torch_dtype,
            attn_implementation,
            trust_remote_code,
            kwargs,
            load_strategy,
        )
        return apply_liger_kernel(model) if use_liger_kernel else model

    @classmethod
    def from_config(
        cls,
        config: ConfigSource,
        *,
        torch_dtype: str | torch.dtype = "auto",
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        seed: int | None = None,
        use_liger_kernel: bool = False,
        load_strategy: str = "sharded",
        **overrides: Any,
    ) -> PreTrainedModel:
        """Build a randomly initialized model from a config.

        Args:
            config: a dict with ``model_type`` plus fields, a path to a directory holding
                config.json or to a .json file, or a ``transformers.PretrainedConfig`` (copied, never changed).
            torch_dtype: see ``resolve_torch_dtype``; ``"auto"`` is bf16 on CUDA, fp32 on CPU.
            attn_implementation: ``"sdpa"``, ``"eager"``, ... as transformers takes it.
            trust_remote_code: allow the code named by the config's ``auto_map`` to run.
            seed: when given, the initial weights depend only on it; the global RNG state is
                left as it was. When None, the weights come from the global RNG.
            use_liger_kernel: swap RMSNorm, RoPE and SwiGLU for Liger's Triton kernels
                (``apply_liger_kernel``); CUDA and the liger-kernel package only.
            **overrides: config fields set on top of ``config`` (``num_hidden_layers=1``).
            load_strategy: ``full`` builds the whole model on every rank even inside ``defer_weights()``,
                where it is otherwise built on the meta device and initialised shard by shard by
                ``materialize_model`` (the same weights for the same seed). No effect outside the block.

        Returns:
            The model, on the CPU, in training mode.

        Raises:
            ModelError: for a missing path, a config without ``model_type``, a ``model_type``
                transformers does not know or has no causal LM for (naming the closest), an
                unsupported ``torch_dtype``, or ``use_liger_kernel`` where Liger cannot run.
        """
        _check_liger(use_liger_kernel)
        model = _from_config(
            CAUSAL_LM, config, torch_dtype, attn_implementation, trust_remote_code, seed, overrides, load_strategy
        )
        return apply_liger_kernel(model) if use_liger_kernel else model


class AutoModelForImageTextToText:
    """Build Hugging Face vision-language models (image and text in, text out) with SDPA and a dtype fit for the device.

    Llava, Qwen2-VL, Qwen2.5-VL, Gemma 3 and every other type ``transformers.AutoModelForImageTextToText``
    knows. The models returned are plain ``transformers`` models; nothing is wrapped or patched.
    Use it from Python or from YAML (``_target_: automodel.models.AutoModelForImageTextToText.from_pretrained``).
    """

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        torch_dtype: str | torch.dtype = "auto",
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        load_strategy: str = "sharded",
        **kwargs: Any,
    ) -> PreTrainedModel:
        """Load pretrained weights with ``transformers.AutoModelForImageTextToText.from_pretrained``.

        Args:
            pretrained_model_name_or_path: a directory written by ``save_pretrained`` (or
                ``build_tiny_vlm``), or a hub id (read from the local cache when ``HF_HUB_OFFLINE=1``).
            torch_dtype: see ``resolve_torch_dtype``; ``"auto"`` is bf16 on CUDA, fp32 on CPU
                (not the checkpoint's dtype, unlike transformers' ``"auto"``).
            attn_implementation: ``"sdpa"``, ``"eager"``, ``"flash_attention_2"``, ... as transformers takes it.
            trust_remote_code: allow model code shipped with the checkpoint to run.
            **kwargs: passed to transformers as they are (``revision``, ``device_map``, ...); a hub token
                (``token``, or ``hf_token``/``use_auth_token``) goes to the download only, and any other
                credential-looking keyword is refused, since transformers would save it in config.json.
            load_strategy: how a model built inside ``defer_weights()`` gets its weights after sharding:
                ``sharded`` (each rank reads by memory map only the slices it holds), ``rank0_broadcast``
                (rank 0 reads, every rank keeps its part) or ``full`` (built and loaded whole, as outside
                the block). Outside ``defer_weights()`` the model is loaded whole whatever it says.

        Returns:
            The model, on the CPU unless ``device_map`` says otherwise, in eval mode as transformers leaves it.

        Raises:
            ModelError: for a local path that does not exist or holds no config.json, a hub id that
                cannot be reached (offline or not found), a model type with no image-text-to-text
                class (naming the closest), or an unsupported ``torch_dtype``.
        """
        return _from_pretrained(
            IMAGE_TEXT_TO_TEXT,
            pretrained_model_name_or_path,
            torch_dtype,
            attn_implementation,
            trust_remote_code,
            kwargs,
            load_strategy,
        )

    @classmethod
    def from_config(
        cls,
        config: ConfigSource,
        *,
        torch_dtype: str | torch.dtype = "auto",
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        seed: int | None = None,
        load_strategy: str = "sharded",
        **overrides: Any,
    ) -> PreTrainedModel:
        """Build a randomly initialized vision-language model from a config.

        Args:
            config: a dict with ``model_type`` plus fields (``text_config`` and ``vision_config``
                as nested dicts, see ``tiny_vlm_config``), a path to a directory holding
                config.json or to a .json file, or a ``transformers.PretrainedConfig`` (copied, never changed).
            torch_dtype: see ``resolve_torch_dtype``; ``"auto"`` is bf16 on CUDA, fp32 on CPU.
            attn_implementation: ``"sdpa"``, ``"eager"``, ... as transformers takes it.
            trust_remote_code: allow the code named by the config's ``auto_map`` to run.
            seed: when given, the initial weights depend only on it; the global RNG state is
                left as it was. When None, the weights come from the global RNG.
            **overrides: top-level config fields set on top of ``config`` (``image_token_index=4``).
            load_strategy: ``full`` builds the whole model on every rank even inside ``defer_weights()``,
                where it is otherwise built on the meta device and initialised shard by shard by
                ``materialize_model`` (the same weights for the same seed). No effect outside the block.

        Returns:
            The model, on the CPU, in training mode.

        Raises:
            ModelError: for a missing path, a config without ``model_type``, a ``model_type``
                transformers does not know or has no image-text-to-text class for (naming the
                closest), or an unsupported ``torch_dtype``.
        """
        return _from_config(
            IMAGE_TEXT_TO_TEXT,
            config,
            torch_dtype,
            attn_implementation,
            trust_remote_code,
            seed,
            overrides,
            load_strategy,
        )


def _from_pretrained(
    task: ModelTask,
    name_or_path: str | os.PathLike,
    torch_dtype: str | torch.dtype,
    attn_implementation: str,
    trust_remote_code: bool,
    kwargs: dict[str, Any],
    load_strategy: str = "full",
) -> PreTrainedModel:
    """Load with the transformers auto class of ``task``; a checkpoint of another kind is a ModelError.

    Inside ``defer_weights()`` (and ``load_strategy`` not ``full``) the model is built on the
    meta device from its config and registered for ``materialize_model`` to read its files.
    """
    check_load_strategy(load_strategy)
    source = pretrained_source(name_or_path, needs_one_of=("config.json",))
    kwargs = hub_kwargs(kwargs, "model")
    dtype = resolve_torch_dtype(torch_dtype)
    with load_errors_explained(source, "model"):
        if deferring() and load_strategy != "full":
            model = _pretrained_on_meta(
                task, source, dtype, attn_implementation, trust_remote_code, kwargs, load_strategy
            )
            if model is not None:
                return model
        try:
            return task.auto_class.from_pretrained(
                source,
                dtype=dtype,
                attn_implementation=attn_implementation,
                trust_remote_code=trust_remote_code,
                **kwargs,
            )
        except ValueError:
            # transformers says "Unrecognized configuration class" for a checkpoint of another
            # kind; name its model type and the closest ones instead. Any other ValueError passes on.
            check_model_task(AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs), task)
            raise


def _pretrained_on_meta(
    task: ModelTask,
    source: str,
    dtype: torch.dtype,
    attn_implementation: str,
    trust_remote_code: bool,
    kwargs: dict[str, Any],
    load_strategy: str,
) -> PreTrainedModel | None:
    """Build the checkpoint's model on the meta device, drawing nothing (as transformers' own loading), and
    register its safetensors folder (downloaded first for a hub id) for ``materialize_model``.

    Returns None, after a warning, when the files do not hold every weight under the model's own
    names (no safetensors, or names transformers converts while loading, as older checkpoints of
    some model types need): the caller then loads the whole model with transformers.
    """
    config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    check_model_task(config, task)
    folder = Path(source) if Path(source).is_dir() else weights_snapshot(source, kwargs)
    with not_recording(), torch.device("meta"):
        model = task.auto_class.from_config(
            config, dtype=dtype, attn_implementation=attn_implementation, trust_remote_code=trust_remote_code
        )
    absent = weights_absent_from_files(model, folder)
    if absent:
        warnings.warn(
            f"{source}: the files do not hold {', '.join(absent[:3])}{' ...' if len(absent) > 3 else ''} under the "
            "model's names, so each rank loads the whole model with transformers before sharding "
            "(model.load_strategy: full)",
            stacklevel=3,
        )
        return None
    if (folder / "generation_config.json").is_file():
        model.generation_config = GenerationConfig.from_pretrained(folder)
    model.eval()
    register_deferred(model, load_strategy, folder)
    return model


def _from_config(
    task: ModelTask,
    config: ConfigSource,
    torch_dtype: str | torch.dtype,
    attn_implementation: str,
    trust_remote_code: bool,
    seed: int | None,
    overrides: dict[str, Any],
    load_strategy: str = "full",
) -> PreTrainedModel:
    """Build a randomly initialized model of ``task`` from ``config`` and ``overrides``, seeded when asked.

    Inside ``defer_weights()`` (and ``load_strategy`` not ``full``) it is built on the meta
    device with every initialisation recorded, for ``materialize_model``.
    """
    check_load_strategy(load_strategy)
    built = build_model_config(config, **overrides)
    check_model_task(built, task)
    dtype = resolve_torch_dtype(torch_dtype)
    deferred = deferring() and load_strategy != "full"
    with _seeded(seed), initializing_on_meta() if deferred else contextlib.nullcontext():
        model = task.auto_class.from_config(
            built, dtype=dtype, attn_implementation=attn_implementation, trust_remote_code=trust_remote_code
        )
    if deferred:
        register_deferred(model, load_strategy)
    return model


def check_load_strategy(load_strategy: str) -> None:
    """Raise ModelError unless ``load_strategy`` is one of ``LOAD_STRATEGIES``."""
    if load_strategy not in LOAD_STRATEGIES:
        raise ModelError(f"load_strategy {load_strategy!r} is not one of {', '.join(LOAD_STRATEGIES)}.")


def _check_liger(use_liger_kernel: bool) -> None:
    """Raise ModelError before any loading when Liger kernels are asked for and cannot run."""
    problem = liger_kernel_problem() if use_liger_kernel else None
    if problem is not None:
        raise ModelError(problem + ".")


@contextlib.contextmanager
def _seeded(seed: int | None) -> Iterator[None]:
    """Seed torch's CPU and current-CUDA RNGs inside the block and restore them after; do nothing for None."""
    if seed is None:
        yield
        return
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            torch.cuda.manual_seed(seed)
        yield
