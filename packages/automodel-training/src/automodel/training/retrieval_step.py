"""One optimizer step of a bi-encoder (contrastive) or a cross-encoder (reranking) over grouped batches.

A bi-encoder batch holds ``query_*`` tensors [B, Lq], ``passage_*`` tensors [B * G, Lp] (each
query's positive first, then its negatives) and ``group_size`` G; a cross-encoder batch holds
the pairs' ``input_ids``/``attention_mask`` [B * G, L], ``labels`` and ``group_size``. Each
micro-batch loss is divided by the number of queries of the whole step over every rank, so
accumulation and data parallelism (gradients summed over ranks) equal one big batch.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from automodel.training.grad_cache import cached_contrastive_backward
from automodel.training.step import StepResult, _gradient_sync, finish_step, to_device

QUERY, PASSAGE = "query_", "passage_"


def split_bi_encoder_batch(batch: dict) -> tuple[dict, dict, int]:
    """Return ``(query inputs, passage inputs, group size)`` of a bi-encoder batch (prefixes removed)."""
    query = {k.removeprefix(QUERY): v for k, v in batch.items() if k.startswith(QUERY)}
    passage = {k.removeprefix(PASSAGE): v for k, v in batch.items() if k.startswith(PASSAGE)}
    return query, passage, int(batch["group_size"])


def count_queries(micro_batches: Sequence[dict]) -> int:
    """Return the number of queries (groups) in ``micro_batches`` of either kind."""
    return sum(
        len(b["query_input_ids"]) if "query_input_ids" in b else len(b["input_ids"]) // int(b["group_size"])
        for b in micro_batches
    )


def contrastive_train_step(
    model: torch.nn.Module,
    micro_batches: Sequence[dict],
    loss_fn: Any,
    optimizer: torch.optim.Optimizer,
    *,
    lr_scheduler: Any = None,
    max_grad_norm: float | None = None,
    device: torch.device | str = "cpu",
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    process_group: Any = None,
    temperature: Callable[[], torch.Tensor | None] | None = None,
    gradient_cache_chunk: int | None = None,
) -> StepResult:
    """Train a bi-encoder one optimizer step on ``micro_batches`` and return its StepResult.

    ``model(query=..., passage=...)`` must return ``(query embeddings, passage embeddings)`` in one
    call and ``model(**inputs)`` the embeddings of one side (``BiEncoder``). ``loss_fn`` is an
    ``InfoNCELoss``; ``temperature()`` gives a learnable temperature (None for the loss's own).
    With ``gradient_cache_chunk`` the embeddings are computed that many rows at a time and the
    gradient cached (``cached_contrastive_backward``): the same gradients in less memory.
    ``StepResult.loss`` is the mean loss per query; ``num_label_tokens`` counts the queries.
    """
    model.train()
    num_queries = _step_queries(micro_batches, device, all_reduce)
    loss_sum = torch.zeros((), device=device)
    num_tokens, last = 0, len(micro_batches) - 1
    for index, micro_batch in enumerate(micro_batches):
        query, passage, group_size = split_bi_encoder_batch(to_device(micro_batch, device))
        num_tokens += int(query["attention_mask"].sum() + passage["attention_mask"].sum())
        current = temperature() if temperature is not None else None
        with _gradient_sync(model, index == last):
            if gradient_cache_chunk:
                # Within the step's last micro-batch, only its last chunk reduces the gradients.
                loss = cached_contrastive_backward(
                    lambda inputs: model(**inputs),
                    query,
                    passage,
                    loss_fn,
                    group_size,
                    chunk_size=gradient_cache_chunk,
                    num_queries=num_queries,
                    no_sync=getattr(model, "no_sync", None) if index == last else None,
                    process_group=process_group,
                    temperature=current,
                )
            else:
                q, p = model(query=query, passage=passage)
                loss = loss_fn(
                    q, p, group_size, num_queries=num_queries, temperature=current, process_group=process_group
                )
                loss.backward()
        loss_sum += loss.detach()
    return finish_step(model, optimizer, lr_scheduler, max_grad_norm, all_reduce, loss_sum, num_queries, num_tokens)


def rerank_train_step(
    model: torch.nn.Module,
    micro_batches: Sequence[dict],
    loss_fn: Any,
    optimizer: torch.optim.Optimizer,
    *,
    lr_scheduler: Any = None,
    max_grad_norm: float | None = None,
    device: torch.device | str = "cpu",
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> StepResult:
    """Train a cross-encoder one optimizer step on grouped pairs and return its StepResult.

    ``model(input_ids, attention_mask, ...)`` returns an output with ``logits`` [B * G, 1];
    ``loss_fn(logits, group_size, labels=..., num_queries=...)`` is ``RerankBCELoss`` or
    ``ListwiseSoftmaxLoss`` (which takes no labels). ``StepResult.loss`` is the mean loss per query.
    """
    model.train()
    num_queries = _step_queries(micro_batches, device, all_reduce)
    loss_sum = torch.zeros((), device=device)
    num_tokens, last = 0, len(micro_batches) - 1
    for index, micro_batch in enumerate(micro_batches):
        batch = to_device(micro_batch, device)
        group_size, labels = int(batch.pop("group_size")), batch.pop("labels", None)
        num_tokens += int(batch["attention_mask"].sum())
        with _gradient_sync(model, index == last):
            logits = model(**batch).logits
            extra = {"labels": labels} if labels is not None and _takes_labels(loss_fn) else {}
            loss = loss_fn(logits, group_size, num_queries=num_queries, **extra)
            loss.backward()
        loss_sum += loss.detach()
    return finish_step(model, optimizer, lr_scheduler, max_grad_norm, all_reduce, loss_sum, num_queries, num_tokens)


def _step_queries(
    micro_batches: Sequence[dict], device: torch.device | str, all_reduce: Callable[[torch.Tensor], torch.Tensor] | None
) -> torch.Tensor:
    """The queries of the whole step, summed over the ranks ``all_reduce`` covers: every loss's divisor."""
    count = torch.tensor(count_queries(micro_batches), device=device)
    return count if all_reduce is None else all_reduce(count)


def _takes_labels(loss_fn: Any) -> bool:
    """Whether a reranking loss reads the pairs' labels (BCE does, listwise softmax does not)."""
    return "labels" in inspect.signature(loss_fn.forward if hasattr(loss_fn, "forward") else loss_fn).parameters
