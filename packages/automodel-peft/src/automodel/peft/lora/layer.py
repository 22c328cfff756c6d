"""LoRALinear: an nn.Linear plus a low-rank adapter (LoRA, or DoRA with a magnitude vector).

The adapter output is computed as ``(dropout(x) @ A^T) @ B^T * scale`` and added to the base
output in one ``addmm``; ``B @ A`` is never built in the forward pass (only to merge).
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from automodel.peft.errors import PeftError
from automodel.peft.lora.config import LoRAConfig
from automodel.peft.quantized import compute_dtype, dense_weight, is_quantized


def lora_branch(
    x: torch.Tensor,
    base_out: torch.Tensor,
    lora_A: torch.Tensor,
    lora_B: torch.Tensor,
    scale: float,
    dropout_p: float,
    dropout_post: bool,
) -> torch.Tensor:
    """Return ``base_out + scale * B A dropout(x)`` (dropout on the LoRA output instead when ``dropout_post``).

    ``x`` is (..., in) in the adapter dtype, ``base_out`` (..., out); ``dropout_p`` is 0 outside training.
    """
    x2 = x.reshape(-1, x.shape[-1])
    out2 = base_out.reshape(-1, base_out.shape[-1])
    if dropout_p and not dropout_post:
        x2 = F.dropout(x2, dropout_p)
    h = F.linear(x2, lora_A)
    if dropout_p and dropout_post:
        result = out2 + F.dropout(F.linear(h, lora_B) * scale, dropout_p).to(out2.dtype)
    elif h.dtype == out2.dtype:
        result = torch.addmm(out2, h, lora_B.t(), alpha=scale)
    else:
        result = out2 + (F.linear(h, lora_B) * scale).to(out2.dtype)
    return result.reshape(base_out.shape)


def dora_branch(
    x: torch.Tensor,
    base_out: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    lora_A: torch.Tensor,
    lora_B: torch.Tensor,
    magnitude: torch.Tensor,
    scale: float,
    dropout_p: float,
    dropout_post: bool,
) -> torch.Tensor:
    """Return the DoRA output ``base_out + (m/n - 1) W dropout(x) + (m/n) scale B A dropout(x)`` as HF peft does.

    ``n`` is the row norm of ``W + scale B A``, treated as a constant (no gradient), ``m`` the magnitude.
    """
    x2 = x.reshape(-1, x.shape[-1])
    out2 = base_out.reshape(-1, base_out.shape[-1])
    gain = magnitude / weight_norm(weight, lora_A, lora_B, scale)
    if dropout_p and not dropout_post:
        x2 = F.dropout(x2, dropout_p)
        plain = F.linear(x2, weight.to(x2.dtype))
    else:
        plain = (out2 if bias is None else out2 - bias).to(x2.dtype)
    h = F.linear(x2, lora_A)
    if dropout_p and dropout_post:
        adapted = plain + F.dropout(F.linear(h, lora_B) * scale, dropout_p)
    else:
        adapted = torch.addmm(plain, h, lora_B.t(), alpha=scale)
    return (out2 + (gain * adapted - plain).to(out2.dtype)).reshape(base_out.shape)


def weight_norm(weight: torch.Tensor, lora_A: torch.Tensor, lora_B: torch.Tensor, scale: float) -> torch.Tensor:
    """Row norms of ``W + scale B A`` (shape (out,)), without gradient and without building ``B A``.

    Uses ``|w + s b A|^2 = |w|^2 + 2 s b.(A w) + s^2 b (A A^T) b`` per row, in the adapter dtype.
    """
    with torch.no_grad():
        w = weight.to(lora_A.dtype)
        squared = (
            torch.linalg.vector_norm(w, dim=1).square()
            + 2 * scale * (lora_B * F.linear(w, lora_A)).sum(1)
            + scale**2 * ((lora_B @ (lora_A @ lora_A.t())) * lora_B).sum(1)
        )
        return squared.clamp_min(0).sqrt()


class LoRALinear(nn.Module):
    """An nn.Linear (``base_layer``) with a trainable low-rank update: ``lora_A`` (r x in), ``lora_B`` (out x r).

    With DoRA it also holds ``lora_magnitude_vector`` (out,). Parameter names match HF peft's, without
    the adapter name: ``<path>.lora_A.weight``, ``<path>.lora_B.weight``, ``<path>.lora_magnitude_vector``.
    """

    def __init__(self, base_layer: nn.Linear, config: LoRAConfig) -> None:
        """Wrap ``base_layer`` with a fresh adapter of ``config``'s rank, scale, dropout, init and dtype."""
        super().__init__()
        self.base_layer = base_layer
        self.r = config.dim
        self.alpha = config.alpha
        self.use_rslora = config.use_rslora
        self.scale = config.scaling
        self.dropout_p = float(config.dropout)
        self.dropout_position = config.dropout_position
        self.init = config.init
        self.merged = False
        self.compile_backend = config.compile_backend if config.fused else None
        if self.compile_backend is not None:
            check_compile_available(self.compile_backend)
        dtype = config.lora_dtype or compute_dtype(base_layer)
        device = base_layer.weight.device
        self.lora_A = nn.Linear(base_layer.in_features, self.r, bias=False, device=device, dtype=dtype)
        self.lora_B = nn.Linear(self.r, base_layer.out_features, bias=False, device=device, dtype=dtype)
        init_adapter(self.lora_A.weight, self.lora_B.weight, config.init)
        magnitude = nn.Parameter(self._weight_norm()) if config.use_dora else None
        self.register_parameter("lora_magnitude_vector", magnitude)
        self.register_buffer("merged_weight_norm", None, persistent=False)

    @property
    def weight(self) -> torch.Tensor:
        """The base layer's weight (code that reads ``module.weight`` keeps working)."""
        return self.base_layer.weight

    @property
    def bias(self) -> torch.Tensor | None:
        """The base layer's bias."""
        return self.base_layer.bias

    @property
    def in_features(self) -> int:
        """Input features of the base layer."""
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        """Output features of the base layer."""
        return self.base_layer.out_features

    @property
    def use_dora(self) -> bool:
        """True when this adapter has a DoRA magnitude vector."""
        return self.lora_magnitude_vector is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return ``base_layer(x)`` plus the adapter's update (just ``base_layer(x)`` while merged)."""
        base_out = self.base_layer(x)
        if self.merged:
            return base_out
        x = x.to(self.lora_A.weight.dtype)
        dropout_p = self.dropout_p if self.training else 0.0
        post = self.dropout_position == "post"
        compiled = self.compile_backend is not None
        lora_fn, dora_fn = compiled_branches(self.compile_backend) if compiled else (lora_branch, dora_branch)
        if self.lora_magnitude_vector is None:
            return lora_fn(x, base_out, self.lora_A.weight, self.lora_B.weight, self.scale, dropout_p, post)
        return dora_fn(
            x,
            base_out,
            dense_weight(self.base_layer),
            self.base_layer.bias,
            self.lora_A.weight,
            self.lora_B.weight,
            self.lora_magnitude_vector,
            self.scale,
            dropout_p,
            post,
        )

    @torch.no_grad()
    def merge(self) -> None:
        """Fold the adapter into ``base_layer.weight`` (DoRA: ``m/n * (W + scale B A)``); a no-op when merged."""
        if self.merged:
            return
        weight = self._float_weight_for("merge")
        delta = self._delta()
        if self.lora_magnitude_vector is None:
            weight.add_(delta.to(weight.dtype))
        else:
            norm = self._weight_norm()
            gain = (self.lora_magnitude_vector / norm).unsqueeze(1)
            weight.copy_((gain * (weight.to(delta.dtype) + delta)).to(weight.dtype))
            self.merged_weight_norm = norm
        self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Undo :meth:`merge`, restoring the base weight (up to rounding); a no-op when not merged."""
        if not self.merged:
            return
        weight = self._float_weight_for("unmerge")
        delta = self._delta()
        if self.lora_magnitude_vector is None:
            weight.sub_(delta.to(weight.dtype))
        else:
            gain = (self.lora_magnitude_vector / self.merged_weight_norm).unsqueeze(1)
            weight.copy_((weight.to(delta.dtype) / gain - delta).to(weight.dtype))
            self.merged_weight_norm = None
        self.merged = False

    def extra_repr(self) -> str:
        """Rank, alpha, scale and the variant, shown by ``print(model)``."""
        variant = "dora" if self.use_dora else "lora"
        return f"{variant}, r={self.r}, alpha={self.alpha}, scale={self.scale:g}, merged={self.merged}"

    def _delta(self) -> torch.Tensor:
        """``scale * B @ A`` in the adapter dtype: the dense update (only built to merge)."""
        return (self.lora_B.weight @ self.lora_A.weight) * self.scale

    def _weight_norm(self) -> torch.Tensor:
        """Row norms of ``W + scale B A`` for the current adapter."""
        return weight_norm(dense_weight(self.base_layer), self.lora_A.weight, self.lora_B.weight, self.scale)

    def _float_weight_for(self, action: str) -> torch.Tensor:
        """The base weight to change in place; PeftError when it is 4-bit quantized."""
        if is_quantized(self.base_layer):
            raise PeftError(
                f"Cannot {action} LoRA into 4-bit quantized base weights; load the base model in bf16 or fp32, "
                "load the adapter onto it (load_adapter) and merge there."
            )
        return self.base_layer.weight


def init_adapter(lora_A: torch.Tensor, lora_B: torch.Tensor, init: str) -> None:
    """Initialise A and B in place: kaiming (peft's default), gaussian (A ~ N(0, 1/r)) or zeros; B starts at 0."""
    with torch.no_grad():
        if init == "kaiming":
            nn.init.kaiming_uniform_(lora_A, a=math.sqrt(5))
        elif init == "gaussian":
            nn.init.normal_(lora_A, std=1 / lora_A.shape[0])
        else:
            nn.init.zeros_(lora_A)
        nn.init.zeros_(lora_B)


def check_compile_available(backend: str) -> None:
    """Raise PeftError unless torch.compile can run ``backend`` here (fused=True never falls back silently)."""
    if not torch._dynamo.is_dynamo_supported():
        raise PeftError(
            "fused=True needs torch.compile, which this Python and PyTorch build does not support; set fused=False."
        )
    if torch._dynamo.config.disable or os.environ.get("TORCHDYNAMO_DISABLE") == "1":
        raise PeftError(
            "fused=True but torch.compile is disabled here (TORCH_COMPILE_DISABLE=1 or TORCHDYNAMO_DISABLE=1), "
            "so it would run the LoRA branch eagerly; unset it or set fused=False."
        )
    if backend not in torch.compiler.list_backends(exclude_tags=()):
        known = ", ".join(torch.compiler.list_backends())
        raise PeftError(f"compile_backend {backend!r} is not a torch.compile backend here; choose one of: {known}.")


@functools.cache
def compiled_branches(backend: str) -> tuple[Callable[..., torch.Tensor], Callable[..., torch.Tensor]]:
    """:func:`lora_branch` and :func:`dora_branch` under torch.compile(backend=...); a failed compile is a PeftError."""

    def guarded(function: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        compiled = torch.compile(function, backend=backend, dynamic=True)

        @functools.wraps(function)
        def run(*args: object) -> torch.Tensor:
            # torch.compile keeps nn.Parameter sizes static, so every Linear shape would compile anew until
            # the recompile limit silently turns the rest eager; views of them get dynamic sizes instead.
            args = tuple(arg.view_as(arg) if isinstance(arg, nn.Parameter) else arg for arg in args)
            try:
                return compiled(*args)
            except torch._dynamo.exc.BackendCompilerFailed as error:
                cause = getattr(error, "inner_exception", None) or error
                reason = (str(cause).strip().splitlines() or [""])[0]
                raise PeftError(
                    f"fused=True: torch.compile (backend {backend!r}) could not compile the LoRA branch "
                    f"({type(cause).__name__}: {reason}). Set fused=False to run it eagerly."
                ) from error

        return run

    return guarded(lora_branch), guarded(dora_branch)
