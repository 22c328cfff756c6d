"""Held-out retrieval quality: bi-encoders ranked over a whole corpus, cross-encoders over each query's group."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from automodel.data.retrieval import RetrievalEvalSet
from automodel.training import exact_top_k, rerank_metrics, retrieval_metrics, to_device

REPORTED = ("ndcg", "mrr", "recall", "map")


@torch.no_grad()
def encode_texts(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    *,
    prompt: str | None,
    max_length: int,
    batch_size: int,
    device: torch.device | str,
) -> torch.Tensor:
    """Return the bi-encoder's embeddings [len(texts), D] (float32, on the CPU) of ``prompt + text`` for each text.

    Texts are embedded longest first, so that each batch holds texts of similar length and pads
    little (as sentence-transformers' ``encode`` does); the rows come back in the given order.
    """
    order = sorted(range(len(texts)), key=lambda row: -len(texts[row]))
    chunks = []
    for start in range(0, len(order), batch_size):
        inputs = tokenizer(
            [(prompt or "") + texts[row] for row in order[start : start + batch_size]],
            padding=True,
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        chunks.append(model(**to_device(dict(inputs), device)).float().cpu())
    embeddings = torch.cat(chunks)
    return embeddings[torch.argsort(torch.tensor(order))]


def evaluate_bi_encoder(
    model: torch.nn.Module,
    tokenizer: Any,
    eval_set: RetrievalEvalSet,
    *,
    query_max_length: int,
    passage_max_length: int,
    batch_size: int,
    k_values: Sequence[int],
    device: torch.device | str,
) -> dict[str, float]:
    """Rank the whole corpus for every judged query and return nDCG, MRR, recall and MAP at each of ``k_values``.

    The model's ``query_prompt`` and ``passage_prompt`` are put before the texts, as at training time.
    Every rank computes the same numbers (under FSDP2 every rank must run the same forwards).
    """
    was_training = model.training
    model.eval()
    try:
        passage_ids = list(eval_set.corpus)
        passages = encode_texts(
            model,
            tokenizer,
            [eval_set.corpus[i] for i in passage_ids],
            prompt=getattr(model, "passage_prompt", None),
            max_length=passage_max_length,
            batch_size=batch_size,
            device=device,
        )
        query_ids = list(eval_set.queries)
        queries = encode_texts(
            model,
            tokenizer,
            [eval_set.queries[i] for i in query_ids],
            prompt=getattr(model, "query_prompt", None),
            max_length=query_max_length,
            batch_size=batch_size,
            device=device,
        )
    finally:
        model.train(was_training)
    _, top = exact_top_k(queries, passages, max(k_values))
    ranked = {q: [passage_ids[j] for j in row] for q, row in zip(query_ids, top.tolist(), strict=True)}
    metrics = retrieval_metrics(ranked, eval_set.qrels, k_values=k_values)
    return {name: value for name, value in metrics.items() if name.split("@")[0] in REPORTED}


@torch.no_grad()
def evaluate_reranker(
    model: torch.nn.Module,
    batches: Iterable[dict],
    *,
    device: torch.device | str,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Score every held-out group (positive first) and return ``accuracy@1`` and ``mrr`` over all of them.

    With ``all_reduce`` (a sum over data-parallel ranks, each reading its shard) the result covers every rank.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    try:
        for batch in batches:
            batch = to_device(dict(batch), device)
            group_size = int(batch.pop("group_size"))
            batch.pop("labels", None)
            scores = model(**batch).logits.float().reshape(-1, group_size)
            metrics = rerank_metrics(scores)
            count = scores.shape[0]
            sums += torch.tensor([metrics["accuracy@1"] * count, metrics["mrr"] * count, count], device=device)
    finally:
        model.train(was_training)
    if all_reduce is not None:
        sums = all_reduce(sums)
    count = max(float(sums[2]), 1.0)
    return {"accuracy@1": float(sums[0]) / count, "mrr": float(sums[1]) / count, "val_groups": int(sums[2])}
