"""train_step and validation_loss with a plain nn.Module: logits as a tensor, a dict, a tuple or
through a user's output adapter; an output without logits is a TrainingError naming its type."""

from __future__ import annotations

import pytest
import torch
from training_test_helpers import VOCAB, random_batch, split_rows

from automodel.training import MaskedCrossEntropy, TrainingError, train_step, validation_loss


class TinyLM(torch.nn.Module):
    """An embedding, a GRU and a vocabulary head; ``forward(input_ids)`` returns what ``wrap`` makes of the logits."""

    def __init__(self, wrap=lambda logits: logits) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.embed = torch.nn.Embedding(VOCAB, 32)
        self.rnn = torch.nn.GRU(32, 32, batch_first=True)
        self.head = torch.nn.Linear(32, VOCAB)
        self.wrap = wrap

    def forward(self, input_ids: torch.Tensor):
        hidden, _ = self.rnn(self.embed(input_ids))
        return self.wrap(self.head(hidden))


def train(model: torch.nn.Module, steps: int = 30, **options) -> list[float]:
    batch = random_batch([8, 6, 7, 5], seed=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    return [
        train_step(model, split_rows(batch, 2), MaskedCrossEntropy(), optimizer, **options).loss for _ in range(steps)
    ]


@pytest.mark.parametrize(
    "wrap",
    [lambda logits: logits, lambda logits: {"logits": logits}, lambda logits: (logits, None)],
    ids=["tensor", "dict", "tuple"],
)
def test_a_plain_module_trains_and_validates_whatever_holds_its_logits(wrap) -> None:
    model = TinyLM(wrap)
    losses = train(model)
    assert losses[-1] < 0.5 * losses[0]
    assert losses == pytest.approx(train(TinyLM(), 30), rel=1e-6)  # the same run as the bare tensor's
    metrics = validation_loss(model, [random_batch([8, 6, 7, 5], seed=2)], MaskedCrossEntropy())
    assert metrics["val_loss"] < losses[0]


def test_an_output_adapter_reads_a_custom_output() -> None:
    model = TinyLM(lambda logits: {"scores": logits, "aux": 0})
    with pytest.raises(TrainingError, match=r"output of type dict.*output_logits="):
        train(model, steps=1)
    losses = train(model, output_logits=lambda output: output["scores"])
    assert losses == pytest.approx(train(TinyLM(), 30), rel=1e-6)
