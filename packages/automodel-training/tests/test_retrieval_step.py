"""contrastive_train_step and rerank_train_step: accumulation over micro-batches equals one whole batch."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch

from automodel.training import (
    InfoNCELoss,
    ListwiseSoftmaxLoss,
    RerankBCELoss,
    contrastive_train_step,
    rerank_train_step,
)


class TinyEncoder(torch.nn.Module):
    """Embedding + masked mean pooling, with the bi-encoder's call forms."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 8)

    def forward(self, input_ids=None, attention_mask=None, *, query=None, passage=None):
        if query is not None:
            return self(**query), self(**passage)
        mask = attention_mask.unsqueeze(-1).float()
        return (self.embed(input_ids) * mask).sum(1) / mask.sum(1)


class TinyReranker(torch.nn.Module):
    """One logit per (query, passage) pair."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(50, 8)
        self.head = torch.nn.Linear(8, 1)

    def forward(self, input_ids, attention_mask):
        mask = attention_mask.unsqueeze(-1).float()
        return SimpleNamespace(logits=self.head((self.embed(input_ids) * mask).sum(1) / mask.sum(1)))


def _bi_batch(queries: int, group: int, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "query_input_ids": torch.randint(0, 50, (queries, 5), generator=generator),
        "query_attention_mask": torch.ones(queries, 5, dtype=torch.long),
        "passage_input_ids": torch.randint(0, 50, (queries * group, 7), generator=generator),
        "passage_attention_mask": torch.ones(queries * group, 7, dtype=torch.long),
        "group_size": group,
    }


def _split(batch: dict, group: int) -> list[dict]:
    half = len(batch["query_input_ids"]) // 2
    parts = []
    for rows in (slice(0, half), slice(half, None)):
        passages = slice(rows.start * group, None if rows.stop is None else rows.stop * group)
        parts.append(
            {
                **{k: v[rows] for k, v in batch.items() if k.startswith("query_")},
                **{k: v[passages] for k, v in batch.items() if k.startswith("passage_")},
                "group_size": group,
            }
        )
    return parts


def _step(model, batches, loss_fn, step_fn, **kwargs):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    result = step_fn(model, batches, loss_fn, optimizer, **kwargs)
    return result, [p.detach().clone() for p in model.parameters()]


@pytest.mark.parametrize("chunk", [None, 3])
def test_two_micro_batches_of_a_bi_encoder_step_count_as_one_batch_per_query(chunk):
    # In-batch negatives differ when a batch is split, so each half is compared with its own loss.
    batch = _bi_batch(8, 3, seed=1)
    model = TinyEncoder()
    whole, whole_params = _step(copy.deepcopy(model), [batch], InfoNCELoss(), contrastive_train_step)
    assert whole.num_label_tokens == 8 and whole.loss > 0
    halves, _ = _step(
        copy.deepcopy(model), _split(batch, 3), InfoNCELoss(), contrastive_train_step, gradient_cache_chunk=chunk
    )
    first, _ = _step(copy.deepcopy(model), _split(batch, 3)[:1], InfoNCELoss(), contrastive_train_step)
    second, _ = _step(copy.deepcopy(model), _split(batch, 3)[1:], InfoNCELoss(), contrastive_train_step)
    assert halves.loss == pytest.approx((first.loss + second.loss) / 2, abs=1e-6)
    assert halves.num_label_tokens == 8
    cached, cached_params = _step(
        copy.deepcopy(model), [batch], InfoNCELoss(), contrastive_train_step, gradient_cache_chunk=chunk
    )
    assert cached.loss == pytest.approx(whole.loss, abs=1e-6)
    for a, b in zip(cached_params, whole_params, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)


@pytest.mark.parametrize("loss_fn", [RerankBCELoss(), ListwiseSoftmaxLoss()], ids=["bce", "listwise"])
def test_a_rerank_step_over_micro_batches_equals_the_whole_batch(loss_fn):
    generator = torch.Generator().manual_seed(2)
    pairs = {
        "input_ids": torch.randint(0, 50, (12, 6), generator=generator),
        "attention_mask": torch.ones(12, 6, dtype=torch.long),
        "labels": torch.tensor([1.0, 0.0, 0.0] * 4),
        "group_size": 3,
    }
    halves = [{k: v[:6] if torch.is_tensor(v) else v for k, v in pairs.items()}]
    halves.append({k: v[6:] if torch.is_tensor(v) else v for k, v in pairs.items()})
    model = TinyReranker()
    whole, whole_params = _step(copy.deepcopy(model), [pairs], loss_fn, rerank_train_step)
    split, split_params = _step(copy.deepcopy(model), halves, loss_fn, rerank_train_step)
    assert whole.num_label_tokens == 4 and split.loss == pytest.approx(whole.loss, abs=1e-6)
    for a, b in zip(split_params, whole_params, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
