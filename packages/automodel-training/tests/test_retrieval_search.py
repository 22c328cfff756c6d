"""exact_top_k streams over the corpus and returns what torch.topk over the whole score matrix does."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from automodel.training import TrainingError, exact_top_k


def full_top_k(queries, corpus, k, similarity):
    if similarity == "cosine":
        queries, corpus = F.normalize(queries, dim=-1), F.normalize(corpus, dim=-1)
    return (queries @ corpus.T).topk(min(k, corpus.shape[0]), dim=1)


def data(seed=0, corpus_size=37):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(5, 8, generator=generator), torch.randn(corpus_size, 8, generator=generator)


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize(("k", "chunk_size"), [(1, 4), (7, 4), (7, 5), (10, 100), (100, 6)])
def test_streaming_top_k_equals_topk_over_the_whole_matrix(similarity, k, chunk_size) -> None:
    queries, corpus = data()
    scores, indices = exact_top_k(queries, corpus, k, chunk_size=chunk_size, similarity=similarity)
    expected_scores, expected_indices = full_top_k(queries, corpus, k, similarity)
    assert scores.shape == indices.shape == (5, min(k, 37))
    torch.testing.assert_close(scores, expected_scores)
    assert torch.equal(indices, expected_indices)


def test_all_negative_similarities_and_chunks_given_as_an_iterable() -> None:
    queries, corpus = data(seed=1)
    queries, corpus = queries.abs(), -corpus.abs()  # every similarity is below zero
    expected_scores, expected_indices = full_top_k(queries, corpus, 9, "dot")
    assert (expected_scores < 0).all()
    parts = (part for part in (corpus[:10], corpus[10:13], corpus[13:]))
    scores, indices = exact_top_k(queries, parts, 9, chunk_size=4, similarity="dot")
    torch.testing.assert_close(scores, expected_scores)
    assert torch.equal(indices, expected_indices)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_queries_stream_a_cpu_corpus() -> None:
    queries, corpus = data()
    scores, indices = exact_top_k(queries.cuda(), corpus, 5, chunk_size=8)
    expected_scores, expected_indices = full_top_k(queries, corpus, 5, "cosine")
    assert indices.device.type == "cuda"
    torch.testing.assert_close(scores.cpu(), expected_scores)
    assert torch.equal(indices.cpu(), expected_indices)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda q, c: exact_top_k(q, c, 0), "needs k >= 1"),
        (lambda q, c: exact_top_k(q, c, 3, chunk_size=0), "chunk_size >= 1"),
        (lambda q, c: exact_top_k(q, c, 3, similarity="l2"), "similarity is 'l2'"),
        (lambda q, c: exact_top_k(q[0], c, 3), "query embeddings must be 2-D"),
        (lambda q, c: exact_top_k(q, c[:, :4], 3), "do not fit queries of dim 8"),
    ],
)
def test_mistakes_are_training_errors(call, message) -> None:
    with pytest.raises(TrainingError, match=message):
        call(*data())
