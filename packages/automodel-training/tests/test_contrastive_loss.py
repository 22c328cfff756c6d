"""InfoNCELoss against a loop reference and sentence-transformers, and over two real gloo processes."""

from __future__ import annotations

import multiprocessing
import socket

import pytest
import torch
import torch.nn.functional as F
from retrieval_distributed_worker import GROUP, Encoder, contrastive_on_two_ranks, global_batch

from automodel.training import InfoNCELoss, TrainingError


def reference_infonce(q, p, group_size, temperature, symmetric=False, cosine=True):
    """InfoNCE written out query by query: each query's positive against every passage of the batch."""
    if cosine:
        q, p = F.normalize(q, dim=-1), F.normalize(p, dim=-1)
    batch = q.shape[0]
    total = 0.0
    for i in range(batch):
        logits = torch.stack([q[i] @ p[j] for j in range(p.shape[0])]) / temperature
        total = total + torch.logsumexp(logits, 0) - logits[i * group_size]
    if symmetric:
        backward = 0.0
        for i in range(batch):
            logits = torch.stack([p[i * group_size] @ q[j] for j in range(batch)]) / temperature
            backward = backward + torch.logsumexp(logits, 0) - logits[i]
        total = (total + backward) / 2
    return total / batch


def embeddings(batch=5, group_size=3, dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, dim, generator=generator, dtype=torch.float64)
    p = torch.randn(batch * group_size, dim, generator=generator, dtype=torch.float64)
    return q, p


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("group_size", [1, 3])
def test_infonce_matches_the_loop_reference(similarity, symmetric, group_size) -> None:
    q, p = embeddings(group_size=group_size)
    loss = InfoNCELoss(temperature=0.1, symmetric=symmetric, similarity=similarity)(q, p, group_size)
    expected = reference_infonce(q, p, group_size, 0.1, symmetric, cosine=similarity == "cosine")
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-10)


def test_num_queries_splits_a_batch_exactly_and_a_temperature_tensor_gets_its_gradient() -> None:
    q, p = embeddings(batch=4)
    loss_fn = InfoNCELoss()
    halves = [loss_fn(q[s], p[s.start * 3 : s.stop * 3], 3, num_queries=4) for s in (slice(0, 2), slice(2, 4))]
    torch.testing.assert_close(
        sum(halves), reference_infonce(q[:2], p[:6], 3, 0.05) / 2 + reference_infonce(q[2:], p[6:], 3, 0.05) / 2
    )

    temperature = torch.tensor(0.2, dtype=torch.float64, requires_grad=True)
    loss_fn(q, p, 3, temperature=temperature).backward()
    reference_temperature = temperature.detach().clone().requires_grad_()
    reference_infonce(q, p, 3, reference_temperature).backward()
    torch.testing.assert_close(temperature.grad, reference_temperature.grad)


def test_bf16_embeddings_are_scored_in_fp32() -> None:
    q, p = embeddings()
    loss = InfoNCELoss()(q.bfloat16(), p.bfloat16(), 3)
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss.double(), reference_infonce(q.bfloat16().double(), p.bfloat16().double(), 3, 0.05))


@pytest.mark.parametrize("symmetric", [False, True])
def test_infonce_equals_sentence_transformers_multiple_negatives_ranking_loss(symmetric) -> None:
    losses = pytest.importorskip("sentence_transformers.sentence_transformer.losses")
    q, p = embeddings(batch=6, group_size=4)
    # sentence-transformers takes the positives, then each rank of hard negatives, as separate columns.
    columns = [q, *(p[j::4] for j in range(4))]
    options = {"directions": ("query_to_doc", "doc_to_query"), "partition_mode": "per_direction"} if symmetric else {}
    expected = losses.MultipleNegativesRankingLoss(None, scale=1 / 0.05, **options).compute_loss_from_embeddings(
        columns, None
    )
    torch.testing.assert_close(InfoNCELoss(temperature=0.05, symmetric=symmetric)(q, p, 4), expected)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: InfoNCELoss(temperature=0), "temperature is 0, but it must be a number above 0"),
        (lambda: InfoNCELoss(similarity="l2"), "similarity is 'l2'"),
        (lambda: InfoNCELoss()(*embeddings(), 0), "group_size is 0"),
        (lambda: InfoNCELoss()(*embeddings(), 2), "5 queries with group_size 2 need 10 passage rows, but there are 15"),
        (lambda: InfoNCELoss()(torch.zeros(5, 8), torch.zeros(15, 4), 3), "do not fit"),
        (lambda: InfoNCELoss()(*embeddings(), 3, temperature=-1.0), "temperature is -1.0"),
        (lambda: InfoNCELoss()(*embeddings(), 3, num_queries=0), "num_queries is 0"),
    ],
)
def test_mistakes_are_training_errors(call, message) -> None:
    with pytest.raises(TrainingError, match=message):
        call()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_gloo_ranks_with_cross_device_negatives_give_the_one_process_loss_and_gradients(tmp_path) -> None:
    context = multiprocessing.get_context("forkserver")
    # Children fork from a server that imported these once; DDP's constructor imports torch._dynamo (seconds).
    context.set_forkserver_preload(["torch", "torch._dynamo", "automodel.training", "retrieval_distributed_worker"])
    port = _free_port()
    ranks = [context.Process(target=contrastive_on_two_ranks, args=(rank, port, str(tmp_path))) for rank in range(2)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=120)
    assert [p.exitcode for p in ranks] == [0, 0]
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]
    queries, passages = global_batch()

    for symmetric in (False, True):
        encoder = Encoder()
        features_q, features_p = queries.clone().requires_grad_(), passages.clone().requires_grad_()
        loss = InfoNCELoss(symmetric=symmetric)(encoder(features_q), encoder(features_p), GROUP)
        loss.backward()
        ours = [r[f"symmetric={symmetric}"] for r in results]
        torch.testing.assert_close(ours[0]["loss"] + ours[1]["loss"], loss.detach(), rtol=0, atol=1e-5)
        torch.testing.assert_close(ours[0]["weight"] + ours[1]["weight"], encoder.proj.weight.grad, rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.cat([r["queries"] for r in ours]), features_q.grad, rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.cat([r["passages"] for r in ours]), features_p.grad, rtol=0, atol=1e-5)

    # The gradient cache under DDP (summing): every rank holds the one-process gradients, temperature's included.
    model = Encoder()
    loss = InfoNCELoss(symmetric=True)(model(queries), model(passages), GROUP, temperature=model.log_temperature.exp())
    loss.backward()
    torch.testing.assert_close(
        results[0]["cached"]["loss"] + results[1]["cached"]["loss"], loss.detach(), atol=1e-5, rtol=0
    )
    for result in results:
        for name, param in model.named_parameters():
            torch.testing.assert_close(result["cached"][name], param.grad, rtol=0, atol=1e-5)

    for result in results:
        assert "cross_device_negatives needs the same batch on every rank" in result["uneven"]
        assert "[(12, 12), (9, 12)]" in result["uneven"]
