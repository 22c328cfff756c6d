"""retrieval_metrics by hand and against sentence-transformers' InformationRetrievalEvaluator; rerank_metrics."""

from __future__ import annotations

import math

import pytest
import torch

from automodel.training import TrainingError, exact_top_k, rerank_metrics, retrieval_metrics


def test_metrics_by_hand_with_graded_relevance_and_unjudged_queries() -> None:
    qrels = {
        "q1": {"d1": 1, "d2": 1, "d9": 0},
        "q2": {"d4": 2, "d5": 1},
        "q3": {"d7": 0},  # no relevant document: left out of the means
    }
    ranked = {"q1": ["d3", "d1", "d2", "d9"], "q2": ["d5", "d6", "d4"], "q3": ["d7"]}
    metrics = retrieval_metrics(ranked, qrels, k_values=(1, 3))
    log2 = math.log2
    expected = {
        "recall@1": (0 + 1 / 2) / 2,
        "precision@1": (0 + 1) / 2,
        "accuracy@1": (0 + 1) / 2,
        "mrr@1": (0 + 1) / 2,
        "ndcg@1": (0 + 1 / 2) / 2,
        "map@1": (0 + 1) / 2,
        "recall@3": (1 + 1) / 2,
        "precision@3": (2 / 3 + 2 / 3) / 2,
        "accuracy@3": 1.0,
        "mrr@3": (1 / 2 + 1) / 2,
        "ndcg@3": ((1 / log2(3) + 1 / log2(4)) / (1 + 1 / log2(3)) + (1 + 2 / log2(4)) / (2 + 1 / log2(3))) / 2,
        "map@3": ((1 / 2 + 2 / 3) / 2 + (1 + 2 / 3) / 2) / 2,
    }
    assert metrics.keys() == expected.keys()
    for key, value in expected.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key

    # A judged query missing from the rankings retrieved nothing.
    with_missing = retrieval_metrics(ranked, {**qrels, "q4": {"d1": 1}}, k_values=(3,))
    assert with_missing["recall@3"] == pytest.approx(2 / 3)
    assert with_missing["mrr@3"] == pytest.approx((1 / 2 + 1) / 3)


def test_default_keys() -> None:
    metrics = retrieval_metrics({"q": ["a"]}, {"q": {"a": 1}})
    assert {"ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100", "map@100"} <= metrics.keys()
    assert metrics["ndcg@10"] == metrics["map@100"] == 1.0


class StandIn:
    """What InformationRetrievalEvaluator calls on a model: encode_query and encode_document, here by table lookup."""

    def __init__(self, vectors: dict[str, torch.Tensor]) -> None:
        self.vectors = vectors

    def encode_query(self, texts, **kwargs):
        return torch.stack([self.vectors[t] for t in texts])

    encode_document = encode_query


def test_metrics_equal_sentence_transformers_information_retrieval_evaluator() -> None:
    evaluation = pytest.importorskip("sentence_transformers.sentence_transformer.evaluation")
    from sentence_transformers.util import cos_sim

    generator = torch.Generator().manual_seed(0)
    queries = {f"q{i}": f"query {i}" for i in range(14)}
    corpus = {f"d{i}": f"doc {i}" for i in range(60)}
    vectors = {text: torch.randn(16, generator=generator) for text in [*queries.values(), *corpus.values()]}
    qrels = {}
    for i in range(12):  # q12 and q13 have no relevant document
        chosen = torch.randperm(60, generator=generator)[: 1 + i % 4].tolist()
        qrels[f"q{i}"] = {f"d{j}": 1 for j in chosen}
        for j in chosen:  # relevant documents lie near their query, so every metric is far from 0 and 1
            vectors[f"doc {j}"] = vectors[f"query {i}"] + 1.5 * torch.randn(16, generator=generator)
    k_values = [1, 3, 10, 100]
    evaluator = evaluation.InformationRetrievalEvaluator(
        queries,
        corpus,
        {qid: set(docs) for qid, docs in qrels.items()},
        mrr_at_k=k_values,
        ndcg_at_k=k_values,
        accuracy_at_k=k_values,
        precision_recall_at_k=k_values,
        map_at_k=k_values,
        score_functions={"cosine": cos_sim},
        corpus_chunk_size=16,
    )
    expected = evaluator.compute_all_metrics(StandIn(vectors))["cosine"]

    doc_ids = list(corpus)
    query_vectors = torch.stack([vectors[text] for text in queries.values()])
    corpus_vectors = torch.stack([vectors[text] for text in corpus.values()])
    _, indices = exact_top_k(query_vectors, corpus_vectors, max(k_values), chunk_size=16)
    ranked = {qid: [doc_ids[j] for j in row] for qid, row in zip(queries, indices.tolist(), strict=True)}
    ours = retrieval_metrics(ranked, qrels, k_values=k_values)
    for name in ("ndcg", "mrr", "recall", "precision", "accuracy", "map"):
        for k in k_values:
            assert ours[f"{name}@{k}"] == pytest.approx(float(expected[f"{name}@k"][k]), abs=1e-6), f"{name}@{k}"


def test_rerank_metrics_count_ties_against_the_positive() -> None:
    scores = torch.tensor([[3.0, 1.0, 2.0], [1.0, 2.0, 0.0], [1.0, 1.0, 0.5], [0.0, 2.0, 1.0]])
    metrics = rerank_metrics(scores)
    assert metrics["accuracy@1"] == pytest.approx(1 / 4)
    assert metrics["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 2 + 1 / 3) / 4)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: retrieval_metrics({}, {"q": {"a": 0}}), "no query with a relevant document"),
        (lambda: retrieval_metrics({}, {"q": {"a": 1}}, k_values=(0,)), "k_values must be cut-offs of at least 1"),
        (lambda: rerank_metrics(torch.zeros(6)), r"rerank_metrics needs scores \[queries, group_size\]"),
    ],
)
def test_mistakes_are_training_errors(call, message) -> None:
    with pytest.raises(TrainingError, match=message):
        call()
