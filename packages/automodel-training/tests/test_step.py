"""train_step: loss goes down, clipping, LR schedule, real-token counting."""

from __future__ import annotations

import torch
from training_test_helpers import random_batch, split_rows

from automodel.training import MaskedCrossEntropy, clip_grad_norm, count_real_tokens, train_step, warmup_linear


def test_repeated_steps_on_one_batch_drive_the_loss_down(model):
    batch = random_batch([8, 6, 7, 5], seed=2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = [train_step(model, split_rows(batch, 2), MaskedCrossEntropy(), optimizer).loss for _ in range(25)]
    assert losses[-1] < 0.5 * losses[0]


def test_step_result_counts_label_and_real_tokens(model):
    batch = random_batch([8, 3], seed=2)
    result = train_step(model, split_rows(batch, 1), MaskedCrossEntropy(), torch.optim.SGD(model.parameters(), lr=0.0))
    assert result.num_label_tokens == (8 - 2) + (3 - 2)
    assert result.num_tokens == 11
    assert result.grad_norm > 0


def test_clipping_limits_the_norm_and_reports_the_norm_before(model):
    batch = random_batch([8, 8], seed=4)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    unclipped = train_step(model, [batch], MaskedCrossEntropy(), optimizer).grad_norm
    loss = MaskedCrossEntropy()(model(input_ids=batch["input_ids"]).logits, batch["labels"])
    loss.backward()
    assert clip_grad_norm(model.parameters(), 0.01) == pytest_approx(unclipped)
    after = torch.norm(torch.stack([p.grad.norm() for p in model.parameters() if p.grad is not None]))
    assert float(after) <= 0.01 * 1.0001


def pytest_approx(value: float):
    import pytest

    return pytest.approx(value, rel=1e-4)


def test_the_lr_schedule_steps_once_per_optimizer_step(model):
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    scheduler = warmup_linear(optimizer, total_steps=4)
    batch = random_batch([5], seed=0)
    for _ in range(2):
        train_step(model, [batch], MaskedCrossEntropy(), optimizer, lr_scheduler=scheduler)
    assert optimizer.param_groups[0]["lr"] == 0.5


def test_real_tokens_come_from_the_mask_or_the_packed_sample_lengths():
    assert count_real_tokens(random_batch([4, 2])) == 6
    packed = {"input_ids": torch.zeros(2, 8, dtype=torch.long), "seq_lens": torch.tensor([[3, 4], [5, 0]])}
    assert count_real_tokens(packed) == 12
    assert count_real_tokens({"input_ids": torch.zeros(2, 8, dtype=torch.long)}) == 16
