"""AutoModelForCausalLM: transformers' causal-LM loading with automodel's defaults and errors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch
import transformers
from transformers import PreTrainedModel

from automodel.models.dtypes import resolve_torch_dtype
from automodel.models.errors import ModelError
from automodel.models.liger import apply_liger_kernel, liger_kernel_problem
from automodel.models.model_config import ConfigSource, build_model_config, check_causal_lm_type
from automodel.models.sources import load_errors_explained, pretrained_source


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
            **kwargs: passed to transformers as they are (``revision``, ``device_map``, ...).

        Returns:
            The model, on the CPU unless ``device_map`` says otherwise, in eval mode as transformers leaves it.

        Raises:
            ModelError: for a local path that does not exist or holds no config.json, a hub id that
                cannot be reached (offline or not found), an unsupported ``torch_dtype``, or
                ``use_liger_kernel`` where Liger cannot run.
        """
        _check_liger(use_liger_kernel)
        source = pretrained_source(pretrained_model_name_or_path, needs_one_of=("config.json",))
        dtype = resolve_torch_dtype(torch_dtype)
        with load_errors_explained(source, "model"):
            model = transformers.AutoModelForCausalLM.from_pretrained(
                source,
                dtype=dtype,
                attn_implementation=attn_implementation,
                trust_remote_code=trust_remote_code,
                **kwargs,
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

        Returns:
            The model, on the CPU, in training mode.

        Raises:
            ModelError: for a missing path, a config without ``model_type``, a ``model_type``
                transformers does not know or has no causal LM for (naming the closest), an
                unsupported ``torch_dtype``, or ``use_liger_kernel`` where Liger cannot run.
        """
        _check_liger(use_liger_kernel)
        built = build_model_config(config, **overrides)
        check_causal_lm_type(built)
        dtype = resolve_torch_dtype(torch_dtype)
        with _seeded(seed):
            model = transformers.AutoModelForCausalLM.from_config(
                built, dtype=dtype, attn_implementation=attn_implementation, trust_remote_code=trust_remote_code
            )
        return apply_liger_kernel(model) if use_liger_kernel else model


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
