"""Gradient cache: a contrastive loss over a batch larger than activation memory allows, with the exact gradient.

Pass 1 encodes the batch a chunk at a time without gradients, keeping only the embeddings,
computes the loss over all of them and its gradient with respect to each embedding. Pass 2
re-encodes each chunk with gradients, under the random-number state pass 1 used for it (so
dropout draws the same masks), and backpropagates that chunk's cached embedding gradient
(Gao et al., 2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup").
Activations of one chunk exist at a time; the encoder runs twice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from automodel.training.errors import TrainingError
from automodel.training.retrieval_checks import check_group_size

RngState = tuple[torch.Tensor, list[torch.Tensor] | None]


def _rows(batch: Any, name: str) -> int:
    """Return the leading dimension shared by every tensor of ``batch``."""
    if not isinstance(batch, dict) or not batch or not all(isinstance(v, torch.Tensor) for v in batch.values()):
        raise TrainingError(
            f"{name} must be a non-empty dict of tensors (a tokenizer's output: input_ids, attention_mask, ...), "
            f"got {type(batch).__name__}. Drop any non-tensor entries before the gradient cache."
        )
    rows = {key: value.shape[0] if value.dim() else None for key, value in batch.items()}
    if len(set(rows.values())) != 1 or None in rows.values() or not next(iter(rows.values())):
        raise TrainingError(
            f"the tensors of {name} must share one non-zero leading (batch) dimension, but their leading sizes "
            f"are {rows}. Give every entry one row per text."
        )
    return next(iter(rows.values()))


def _chunks(batch: dict, chunk_size: int) -> list[dict]:
    """Split every tensor of ``batch`` along dim 0 into slices of ``chunk_size`` rows."""
    rows = next(iter(batch.values())).shape[0]
    return [
        {key: value[start : start + chunk_size] for key, value in batch.items()} for start in range(0, rows, chunk_size)
    ]


def _rng_state() -> RngState:
    """The CPU random state, and every CUDA device's once CUDA is in use."""
    cuda_in_use = torch.cuda.is_available() and torch.cuda.is_initialized()
    return torch.get_rng_state(), torch.cuda.get_rng_state_all() if cuda_in_use else None


def _restore_rng(state: RngState) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def cached_contrastive_backward(
    encode: Callable[[dict], torch.Tensor],
    query_batch: dict,
    passage_batch: dict,
    loss_fn: Callable[..., torch.Tensor],
    group_size: int,
    *,
    chunk_size: int,
    num_queries: int | torch.Tensor | None = None,
    no_sync: Callable[[], contextlib.AbstractContextManager] | None = None,
    process_group: Any = None,
    temperature: float | torch.Tensor | None = None,
) -> torch.Tensor:
    """Accumulate into the encoder's ``.grad`` the gradient of ``loss_fn`` over the whole batch, a chunk at a time.

    Args:
        encode: ``encode(batch_dict) -> embeddings [rows, D]``, e.g. a function running the model and pooling.
        query_batch: dict of tensors with B rows (the queries).
        passage_batch: dict of tensors with B * group_size rows, grouped per query, positive first.
        loss_fn: called as ``loss_fn(q, p, group_size, num_queries=, temperature=, process_group=)``,
            e.g. an InfoNCELoss.
        group_size: passages per query.
        chunk_size: rows encoded at once.
        num_queries: the queries of the whole step (all micro-batches and ranks); default B.
        no_sync: a callable returning a context manager that holds back the data-parallel gradient
            reduction (DDP's ``model.no_sync``); every chunk but the last runs inside it.
        process_group: passed to ``loss_fn`` (cross-device negatives).
        temperature: passed to ``loss_fn``; a tensor requiring grad (a learnable temperature) gets its
            gradient in the last chunk's backward, where a data-parallel wrapper reduces it.

    Returns:
        The loss, detached. The random-number state afterwards is the one encoding once would leave.
    """
    group_size = check_group_size(group_size)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise TrainingError(
            f"chunk_size is {chunk_size!r}, but it must be a whole number of at least 1: the rows encoded at once "
            "by the gradient cache. Lower it when the encoder runs out of memory, raise it for speed."
        )
    queries, passages = _rows(query_batch, "query_batch"), _rows(passage_batch, "passage_batch")
    if passages != queries * group_size:
        raise TrainingError(
            f"{queries} queries with group_size {group_size} need {queries * group_size} passages, but "
            f"passage_batch has {passages} rows. Give every query group_size passages, grouped per query."
        )
    chunks = _chunks(query_batch, chunk_size) + _chunks(passage_batch, chunk_size)
    states, embeddings = [], []
    with torch.no_grad():
        for chunk in chunks:
            states.append(_rng_state())
            embeddings.append(encode(chunk))
    after = _rng_state()
    query_chunks = -(-queries // chunk_size)
    q = torch.cat(embeddings[:query_chunks]).detach().requires_grad_()
    p = torch.cat(embeddings[query_chunks:]).detach().requires_grad_()
    learnable = isinstance(temperature, torch.Tensor) and temperature.requires_grad
    loss_temperature = temperature.detach().requires_grad_() if learnable else temperature
    loss = loss_fn(q, p, group_size, num_queries=num_queries, temperature=loss_temperature, process_group=process_group)
    grads = torch.autograd.grad(loss, [q, p, loss_temperature] if learnable else [q, p])
    chunk_grads = [*grads[0].split(chunk_size), *grads[1].split(chunk_size)]
    last = len(chunks) - 1
    for index, (chunk, state, grad) in enumerate(zip(chunks, states, chunk_grads, strict=True)):
        _restore_rng(state)
        with contextlib.nullcontext() if no_sync is None or index == last else no_sync():
            embedding = encode(chunk)
            if index == last and learnable:
                torch.autograd.backward([embedding, temperature], [grad, grads[2]])
            else:
                embedding.backward(grad)
    _restore_rng(after)
    return loss.detach()
