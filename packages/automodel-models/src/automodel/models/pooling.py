"""Pool a transformer's token states into one vector per text, as sentence-transformers' Pooling module does.

Every mode reads the attention mask, so left- and right-padded batches pool the same real tokens.
"""

from __future__ import annotations

import torch

from automodel.models.errors import ModelError, closest_names

POOLING_MODES = ("mean", "cls", "last_token", "weighted_mean")


def check_pooling(pooling: str, *, causal: bool) -> str:
    """Return ``pooling`` when a backbone can use it; raise ModelError otherwise.

    Args:
        pooling: one of ``POOLING_MODES``.
        causal: whether the backbone attends causally (a decoder-only LM such as Llama or Qwen3).
            ``"cls"`` is refused there: the first token of a causal model sees only itself, so
            every text starting with the same token would get the same embedding.

    Returns:
        ``pooling`` unchanged.

    Raises:
        ModelError: for a name not in ``POOLING_MODES`` (naming the closest) or ``"cls"`` on a causal backbone.
    """
    if pooling not in POOLING_MODES:
        close = closest_names(str(pooling), POOLING_MODES, count=1)
        hint = f"did you mean `{close[0]}`? " if close else ""
        raise ModelError(f"pooling {pooling!r} is not supported; {hint}use one of {', '.join(POOLING_MODES)}.")
    if pooling == "cls" and causal:
        raise ModelError(
            "pooling 'cls' takes the first token, which in a causal (decoder-only) backbone attends to itself "
            "only, so every text starting with the same token would get the same embedding; use pooling "
            "`last_token` (with an eos token appended by the tokenizer) or `mean` for this backbone."
        )
    return pooling


def pool(hidden_states: torch.Tensor, attention_mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Return one vector per row of ``hidden_states``, pooled over the tokens ``attention_mask`` marks.

    Args:
        hidden_states: the backbone's last hidden states, ``[N, T, D]``.
        attention_mask: ``[N, T]``, 1 for real tokens and 0 for padding (on either side).
        pooling: ``"mean"`` (average of real tokens), ``"cls"`` (first real token), ``"last_token"``
            (last real token), or ``"weighted_mean"`` (average weighted 1, 2, 3, ... from the first real
            token, as sentence-transformers 6's ``weightedmean``).

    Returns:
        ``[N, D]`` in the dtype of ``hidden_states``; sums of fp16/bf16 states are taken in fp32.

    Raises:
        ModelError: for a ``pooling`` not in ``POOLING_MODES``.
    """
    check_pooling(pooling, causal=False)
    mask = attention_mask.to(torch.bool)
    if pooling in ("mean", "weighted_mean"):
        accumulate = torch.float32 if hidden_states.dtype in (torch.float16, torch.bfloat16) else hidden_states.dtype
        weights = mask.to(accumulate)
        if pooling == "weighted_mean":
            positions = torch.arange(1, mask.shape[1] + 1, device=mask.device, dtype=accumulate)
            weights = weights * (positions - _first_real_index(mask).unsqueeze(1))
        states = hidden_states.masked_fill(~mask.unsqueeze(-1), 0).to(accumulate)
        summed = (states * weights.unsqueeze(-1)).sum(dim=1)
        return (summed / weights.sum(dim=1, keepdim=True).clamp(min=1e-9)).to(hidden_states.dtype)
    if pooling == "cls":
        index = _first_real_index(mask)
    else:
        index = mask.shape[1] - 1 - mask.flip(1).to(torch.int32).argmax(dim=1)
    rows = torch.arange(hidden_states.shape[0], device=hidden_states.device)
    return hidden_states[rows, index.to(hidden_states.device)]


def _first_real_index(mask: torch.Tensor) -> torch.Tensor:
    """Return, per row of a boolean ``[N, T]`` mask, the index of its first True (0 for a row with none)."""
    return mask.to(torch.int32).argmax(dim=1)
