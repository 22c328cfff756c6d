"""Liger kernels (fused RMSNorm, RoPE and SwiGLU in Triton) for a built model, on CUDA only."""

from __future__ import annotations

import importlib.util
import inspect

import torch
from transformers import PreTrainedModel

from automodel.models.errors import ModelError


def liger_kernel_problem() -> str | None:
    """Return why Liger kernels cannot run here (no CUDA, package missing), or None when they can."""
    if not torch.cuda.is_available():
        return (
            "use_liger_kernel needs a CUDA GPU (Liger's kernels are written in Triton) and this machine has none; "
            "remove model.use_liger_kernel or set it to false"
        )
    if importlib.util.find_spec("liger_kernel") is None:
        return "use_liger_kernel needs the liger-kernel package; run `pip install liger-kernel` or remove the key"
    return None


def apply_liger_kernel(model: PreTrainedModel) -> PreTrainedModel:
    """Swap ``model``'s RMSNorm, rotary embedding and SwiGLU MLP for Liger's Triton kernels, in place.

    The forward pass still returns logits (Liger's fused linear cross-entropy is left off, so the
    recipe's ``loss_fn`` stays in charge of the loss); parameter names and the saved checkpoint
    are unchanged. Liger patches the transformers modeling module of the model's family, so
    other models of that family built afterwards in the same process use the kernels too.

    Args:
        model: a transformers causal LM whose ``config.model_type`` Liger supports (llama, mistral,
            qwen2, qwen3, gemma, gemma2, gemma3, phi3, ...).

    Returns:
        ``model`` itself.

    Raises:
        ModelError: without CUDA, without the liger-kernel package, or for a model type Liger
            has no kernels for (naming the supported ones).
    """
    problem = liger_kernel_problem()
    if problem is not None:
        raise ModelError(problem + ".")
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN

    model_type = model.config.model_type
    apply = MODEL_TYPE_TO_APPLY_LIGER_FN.get(model_type)
    if apply is None:
        supported = ", ".join(sorted(MODEL_TYPE_TO_APPLY_LIGER_FN))
        raise ModelError(
            f"use_liger_kernel: Liger has no kernels for model_type `{model_type}` (it has: {supported}); "
            "remove model.use_liger_kernel for this model."
        )
    wanted = {"rope": True, "rms_norm": True, "swiglu": True, "geglu": True, "layer_norm": True}
    wanted |= {"cross_entropy": False, "fused_linear_cross_entropy": False}
    accepted = inspect.signature(apply).parameters
    apply(model=model, **{name: value for name, value in wanted.items() if name in accepted})
    return model
