"""LoRAConfig: what apply_lora adds to a model, checked when it is built."""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real

import torch

from automodel.peft.dtypes import parse_dtype
from automodel.peft.errors import PeftError
from automodel.peft.targets import check_pattern

INITS = ("kaiming", "gaussian", "zeros")
DROPOUT_POSITIONS = ("pre", "post")
DEFAULT_DIM = 8


@dataclass
class LoRAConfig:
    """Settings of a LoRA (or DoRA) adapter; usable as a YAML ``_target_`` with keyword arguments.

    Args:
        dim: the rank r of A (r x in) and B (out x r); ``r`` is an alias. Default 8.
        alpha: the scale numerator: updates are scaled by alpha / r (alpha / sqrt(r) with ``use_rslora``).
        dropout: dropout probability of the LoRA branch while training.
        dropout_position: ``"pre"`` drops the LoRA input (as HF peft does), ``"post"`` the LoRA output.
        target_modules: module names, globs or ``re:`` regexes selecting nn.Linear modules
            (see automodel.peft.targets); a single string is one pattern.
        exclude_modules: patterns of modules to leave alone (a match on a parent excludes its children).
        match_all_linear: target every nn.Linear except the LM head / output embedding.
        use_rslora: scale by alpha / sqrt(r) (rank-stabilized LoRA).
        use_dora: add DoRA's trainable magnitude vector (weight-decomposed LoRA).
        init: ``"kaiming"`` (A kaiming-uniform with a=sqrt(5), B zeros: peft's default), ``"gaussian"``
            (A normal with std 1/r, B zeros) or ``"zeros"`` (A and B zeros: a placeholder that receives no
            gradient until weights are loaded into it).
        lora_dtype: dtype of the adapter weights ("fp32", "bf16", a torch.dtype); None follows the base weight.
        fused: run the LoRA branch through torch.compile.
        compile_backend: the torch.compile backend used when ``fused`` is set.
        r: alias of ``dim``.
        save_merged: a request to trainers that checkpoint (the automodel recipes): also save a full
            model with the adapters merged in. ``apply_lora`` itself does not read it.
    """

    dim: int | None = None
    alpha: float = 8
    dropout: float = 0.0
    dropout_position: str = "pre"
    target_modules: list[str] | str | None = None
    exclude_modules: list[str] | str | None = None
    match_all_linear: bool = False
    use_rslora: bool = False
    use_dora: bool = False
    init: str = "kaiming"
    lora_dtype: str | torch.dtype | None = None
    fused: bool = False
    compile_backend: str = "inductor"
    r: int | None = None
    save_merged: bool = False

    def __post_init__(self) -> None:
        """Resolve the ``r`` alias, normalise patterns and dtype, and reject values that cannot work."""
        if self.dim is not None and self.r is not None and self.dim != self.r:
            raise PeftError(f"dim={self.dim} and r={self.r} disagree; r is an alias of dim, set one of them.")
        rank = self.dim if self.dim is not None else self.r if self.r is not None else DEFAULT_DIM
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise PeftError(f"dim (r) must be a positive integer, got {rank!r}.")
        self.dim = self.r = rank
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, Real) or not self.alpha > 0:
            raise PeftError(f"alpha must be a positive number, got {self.alpha!r}.")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, Real) or not 0 <= self.dropout < 1:
            raise PeftError(f"dropout must be a probability in [0, 1), got {self.dropout!r}.")
        if self.dropout_position not in DROPOUT_POSITIONS:
            raise PeftError(f"dropout_position must be one of {DROPOUT_POSITIONS}, got {self.dropout_position!r}.")
        if self.init not in INITS:
            raise PeftError(f"init must be one of {INITS}, got {self.init!r}.")
        self.target_modules = _patterns(self.target_modules, "target_modules")
        self.exclude_modules = _patterns(self.exclude_modules, "exclude_modules")
        if bool(self.target_modules) == bool(self.match_all_linear):
            raise PeftError(
                "Choose the adapted modules with exactly one of target_modules (names, globs or `re:` patterns) "
                "and match_all_linear=True."
            )
        if self.lora_dtype is not None:
            self.lora_dtype = parse_dtype(self.lora_dtype, "lora_dtype")

    @property
    def scaling(self) -> float:
        """The factor applied to B A x: alpha / r, or alpha / sqrt(r) with use_rslora."""
        return self.alpha / (math.sqrt(self.dim) if self.use_rslora else self.dim)


def _patterns(value: list[str] | str | None, field: str) -> list[str] | None:
    """Turn one pattern or a list of them into a checked list (None stays None)."""
    if value is None:
        return None
    patterns = [value] if isinstance(value, str) else list(value)
    for pattern in patterns:
        check_pattern(pattern, field)
    return patterns
