"""cached_contrastive_backward gives the loss and gradients of one backward over the whole batch."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from automodel.training import InfoNCELoss, TrainingError, cached_contrastive_backward

QUERIES, GROUP, TOKENS, FEATURES = 4, 3, 5, 12


class DropoutEncoder(torch.nn.Module):
    """Token features -> MLP with dropout -> masked mean pooling; a learnable log-temperature beside it."""

    def __init__(self, dropout: float = 0.3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.hidden = torch.nn.Linear(FEATURES, 16)
        self.dropout = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(16, 8)
        self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(0.05)))

    def forward(self, batch: dict) -> torch.Tensor:
        tokens = self.out(self.dropout(torch.tanh(self.hidden(batch["features"]))))
        mask = batch["mask"].unsqueeze(-1)
        return (tokens * mask).sum(1) / mask.sum(1)


def texts(rows: int, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    mask = torch.ones(rows, TOKENS)
    mask[:, 3:] = (torch.rand(rows, 2, generator=generator) > 0.5).float()
    return {"features": torch.randn(rows, TOKENS, FEATURES, generator=generator), "mask": mask}


def reference(model, queries, passages, loss_fn, chunk_size, temperature=None):
    """One loss over every embedding and one backward through every forward (the chunks drawn in the same order)."""
    encode = [
        model({k: v[s : s + chunk_size] for k, v in batch.items()})
        for batch in (queries, passages)
        for s in range(0, len(batch["mask"]), chunk_size)
    ]
    query_chunks = -(-QUERIES // chunk_size)
    loss = loss_fn(torch.cat(encode[:query_chunks]), torch.cat(encode[query_chunks:]), GROUP, temperature=temperature)
    loss.backward()
    return loss.detach()


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("chunk_size", [1, 3, 5, 64])
def test_gradients_and_loss_equal_one_backward_with_dropout_replayed(symmetric, chunk_size) -> None:
    queries, passages = texts(QUERIES, 1), texts(QUERIES * GROUP, 2)
    loss_fn = InfoNCELoss(symmetric=symmetric)

    expected_model = DropoutEncoder()
    torch.manual_seed(7)
    expected = reference(expected_model, queries, passages, loss_fn, chunk_size, expected_model.log_temperature.exp())
    expected_next = torch.rand(3)

    model = DropoutEncoder()
    torch.manual_seed(7)
    loss = cached_contrastive_backward(
        model,
        queries,
        passages,
        loss_fn,
        GROUP,
        chunk_size=chunk_size,
        temperature=model.log_temperature.exp(),
    )
    # The random stream continues as if each text had been encoded once.
    torch.testing.assert_close(torch.rand(3), expected_next)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, expected, rtol=0, atol=1e-5)
    for (name, param), expected_param in zip(model.named_parameters(), expected_model.parameters(), strict=True):
        torch.testing.assert_close(param.grad, expected_param.grad, rtol=0, atol=1e-5, msg=name)


def test_without_dropout_one_chunk_equals_one_plain_forward_and_num_queries_scales() -> None:
    queries, passages = texts(QUERIES, 1), texts(QUERIES * GROUP, 2)
    expected_model = DropoutEncoder(dropout=0.0)
    loss = InfoNCELoss()(expected_model(queries), expected_model(passages), GROUP, num_queries=10)
    loss.backward()
    model = DropoutEncoder(dropout=0.0)
    cached = cached_contrastive_backward(model, queries, passages, InfoNCELoss(), GROUP, chunk_size=2, num_queries=10)
    torch.testing.assert_close(cached, loss.detach(), rtol=0, atol=1e-6)
    for param, expected_param in zip(model.parameters(), expected_model.parameters(), strict=True):
        if expected_param.grad is None:
            assert param.grad is None
        else:
            torch.testing.assert_close(param.grad, expected_param.grad, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("chunk_size", "chunks"), [(1, 16), (3, 2 + 4), (100, 2)])
def test_every_chunk_but_the_last_runs_under_no_sync(chunk_size, chunks) -> None:
    model = DropoutEncoder()
    events = []

    @contextlib.contextmanager
    def no_sync():
        events.append("enter")
        yield
        events.append("exit")

    def encode(batch):
        events.append("grad" if torch.is_grad_enabled() else "no_grad")
        return model(batch)

    cached_contrastive_backward(
        encode,
        texts(QUERIES, 1),
        texts(QUERIES * GROUP, 2),
        InfoNCELoss(),
        GROUP,
        chunk_size=chunk_size,
        no_sync=no_sync,
    )
    assert events == ["no_grad"] * chunks + ["enter", "grad", "exit"] * (chunks - 1) + ["grad"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_size": 0}, "chunk_size is 0"),
        ({"group_size": 2}, "4 queries with group_size 2 need 8 passages, but passage_batch has 12 rows"),
        ({"query_batch": [1, 2]}, "query_batch must be a non-empty dict of tensors"),
        ({"query_batch": {"features": torch.zeros(4, 2), "mask": torch.zeros(3)}}, "must share one non-zero leading"),
    ],
)
def test_mistakes_are_training_errors(kwargs, message) -> None:
    arguments = {"query_batch": texts(QUERIES, 1), "group_size": GROUP, "chunk_size": 2} | kwargs
    with pytest.raises(TrainingError, match=message):
        cached_contrastive_backward(
            DropoutEncoder(),
            arguments["query_batch"],
            texts(QUERIES * GROUP, 2),
            InfoNCELoss(),
            arguments["group_size"],
            chunk_size=arguments["chunk_size"],
        )
