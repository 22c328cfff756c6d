"""Retrieval and reranking metrics, computed as sentence-transformers' InformationRetrievalEvaluator does.

Per query, over its ranking cut at k (``R`` = its relevant documents, those with relevance > 0):

- ``recall@k``: relevant documents retrieved / ``|R|``; ``precision@k``: relevant retrieved / k;
- ``accuracy@k``: 1 when any relevant document is retrieved;
- ``mrr@k``: 1 / rank of the first relevant document (0 when none is retrieved);
- ``ndcg@k``: DCG (gain = relevance, discount log2(rank + 1)) over the DCG of the ideal ranking;
  with binary relevance this is sentence-transformers' nDCG, with graded relevance BEIR's (trec_eval);
- ``map@k``: the sum of precision at each relevant rank, over ``min(k, |R|)``.

Each metric is the mean over the queries with at least one relevant document.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from automodel.training.errors import TrainingError

METRICS = ("ndcg", "mrr", "recall", "precision", "accuracy", "map")


def _dcg(gains: Iterable[float]) -> float:
    return sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains))


def _query_metrics(ranking: Sequence[Any], relevant: Mapping[Any, int], k: int) -> dict[str, float]:
    """The metrics at ``k`` of one query's ranking, given its relevant documents and their relevance."""
    gains = [relevant.get(doc, 0) for doc in ranking[:k]]
    ranks = [rank for rank, gain in enumerate(gains) if gain > 0]
    ideal = _dcg(sorted(relevant.values(), reverse=True)[:k])
    return {
        "ndcg": _dcg(gains) / ideal,
        "mrr": 1.0 / (ranks[0] + 1) if ranks else 0.0,
        "recall": len(ranks) / len(relevant),
        "precision": len(ranks) / k,
        "accuracy": 1.0 if ranks else 0.0,
        "map": sum((hit + 1) / (rank + 1) for hit, rank in enumerate(ranks)) / min(k, len(relevant)),
    }


def retrieval_metrics(
    ranked_ids: Mapping[Any, Sequence[Any]],
    qrels: Mapping[Any, Mapping[Any, int]],
    *,
    k_values: Sequence[int] = (1, 10, 100),
) -> dict[str, float]:
    """Return ``{"ndcg@k", "mrr@k", "recall@k", "precision@k", "accuracy@k", "map@k"}`` for every k of ``k_values``.

    Args:
        ranked_ids: ``{query_id: [doc_id, ...]}``, each query's retrieved documents, best first.
        qrels: ``{query_id: {doc_id: relevance}}``; relevance > 0 is relevant (graded values weigh nDCG).
        k_values: the cut-offs.

    The means run over the queries of ``qrels`` with a relevant document; such a query missing from
    ``ranked_ids`` counts as retrieving nothing. The module docstring defines the metrics.
    """
    if not k_values or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in k_values):
        raise TrainingError(f"k_values must be cut-offs of at least 1, got {k_values!r}; e.g. (1, 10, 100).")
    judged = {qid: {d: r for d, r in docs.items() if r > 0} for qid, docs in qrels.items()}
    judged = {qid: relevant for qid, relevant in judged.items() if relevant}
    if not judged:
        raise TrainingError(
            "qrels holds no query with a relevant document (relevance > 0), so no retrieval metric is defined; "
            "check that the qrels were read for the same split as the queries."
        )
    totals = {f"{name}@{k}": 0.0 for k in k_values for name in METRICS}
    for qid, relevant in judged.items():
        ranking = list(ranked_ids.get(qid, ()))
        for k in k_values:
            for name, value in _query_metrics(ranking, relevant, k).items():
                totals[f"{name}@{k}"] += value
    return {key: total / len(judged) for key, total in totals.items()}


def rerank_metrics(scores: torch.Tensor) -> dict[str, float]:
    """Return ``{"accuracy@1", "mrr"}`` of reranker scores ``[B, G]`` whose column 0 is each row's positive.

    A negative scoring as high as the positive ranks above it (ties count against the positive).
    """
    if scores.dim() != 2 or scores.shape[0] == 0 or scores.shape[1] == 0:
        raise TrainingError(
            f"rerank_metrics needs scores [queries, group_size] with the positive in column 0, got shape "
            f"{tuple(scores.shape)}; reshape the flat pair scores with .view(-1, group_size)."
        )
    scores = scores.detach().float()
    above = (scores[:, 1:] >= scores[:, :1]).sum(dim=1)
    return {"accuracy@1": float((above == 0).float().mean()), "mrr": float((1.0 / (above + 1)).mean())}
