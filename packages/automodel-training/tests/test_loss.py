"""Losses: exact gradient accumulation, and chunked cross-entropy equal to the full one without full logits."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from training_test_helpers import VOCAB, random_batch, split_rows, tiny_llama

from automodel.training import ChunkedCrossEntropy, MaskedCrossEntropy, count_label_tokens, forward_loss


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _accumulated_grads(micro_batches: list[dict], normalize_globally: bool) -> tuple[dict, float]:
    model = tiny_llama(seed=0)
    loss_fn = MaskedCrossEntropy()
    total = count_label_tokens(micro_batches)
    loss_sum = 0.0
    for batch in micro_batches:
        if normalize_globally:
            loss = forward_loss(model, batch, loss_fn, total)
        else:
            loss = forward_loss(model, batch, loss_fn) / len(micro_batches)
        loss.backward()
        loss_sum += float(loss.detach())
    return _grads(model), loss_sum


def test_masked_cross_entropy_is_the_mean_over_label_tokens_by_default():
    logits = torch.randn(2, 5, 11)
    labels = torch.tensor([[1, 2, -100, -100, 3], [-100, 4, 5, 6, -100]])
    expected = F.cross_entropy(logits.reshape(-1, 11), labels.reshape(-1), ignore_index=-100)
    assert torch.allclose(MaskedCrossEntropy()(logits, labels), expected)


def test_masked_cross_entropy_divides_by_the_given_token_count():
    logits = torch.randn(1, 4, 7)
    labels = torch.tensor([[1, 2, 3, -100]])
    full = MaskedCrossEntropy()(logits, labels)
    assert torch.allclose(MaskedCrossEntropy()(logits, labels, num_label_tokens=6), full * 3 / 6)


def test_four_micro_batches_of_two_give_the_gradient_of_one_batch_of_eight():
    batch = random_batch([9, 4, 12, 7, 3, 11, 6, 10], seed=1)
    whole, whole_loss = _accumulated_grads([batch], normalize_globally=True)
    parts, parts_loss = _accumulated_grads(split_rows(batch, 2), normalize_globally=True)
    assert abs(whole_loss - parts_loss) < 1e-6
    for name, grad in whole.items():
        assert torch.allclose(grad, parts[name], atol=1e-6, rtol=0), name


def test_averaging_micro_batch_means_instead_would_give_a_different_gradient():
    batch = random_batch([9, 4, 12, 7, 3, 11, 6, 10], seed=1)
    whole, _ = _accumulated_grads([batch], normalize_globally=True)
    naive, _ = _accumulated_grads(split_rows(batch, 2), normalize_globally=False)
    worst = max(float((whole[n] - naive[n]).abs().max()) for n in whole)
    assert worst > 1e-4


@pytest.mark.parametrize("chunk_size", [1, 5, 4096])
def test_chunked_cross_entropy_equals_the_full_loss_and_its_gradients(chunk_size):
    torch.manual_seed(0)
    hidden = torch.randn(3, 6, 16, requires_grad=True)
    weight = torch.randn(VOCAB, 16, requires_grad=True)
    labels = torch.randint(0, VOCAB, (3, 6))
    labels[0, :2] = -100
    full = MaskedCrossEntropy()(hidden @ weight.T, labels, 20)
    full.backward()
    expected = (hidden.grad.clone(), weight.grad.clone())
    hidden.grad, weight.grad = None, None
    chunked = ChunkedCrossEntropy(chunk_size=chunk_size)(hidden, weight, labels, 20)
    chunked.backward()
    assert torch.allclose(full, chunked, atol=1e-5)
    assert torch.allclose(expected[0], hidden.grad, atol=1e-5)
    assert torch.allclose(expected[1], weight.grad, atol=1e-5)


def test_chunked_cross_entropy_never_keeps_full_logits_for_backward():
    tokens, vocab = 256, 512
    hidden = torch.randn(1, tokens, 16, requires_grad=True)
    weight = torch.randn(vocab, 16, requires_grad=True)
    labels = torch.randint(0, vocab, (1, tokens))
    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(t.numel())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = ChunkedCrossEntropy(chunk_size=8)(hidden, weight, labels)
    loss.backward()
    assert max(saved) < tokens * vocab / 4
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        MaskedCrossEntropy()(hidden @ weight.T, labels)
    assert max(saved) >= tokens * vocab


def test_forward_loss_with_a_chunked_loss_matches_the_logits_path(model):
    batch = random_batch([7, 5], seed=3)
    full = forward_loss(model, batch, MaskedCrossEntropy())
    chunked = forward_loss(model, batch, ChunkedCrossEntropy(chunk_size=3))
    assert torch.allclose(full, chunked, atol=1e-5)


def test_chunked_cross_entropy_rejects_a_non_positive_chunk_size():
    with pytest.raises(ValueError, match="chunk_size must be positive"):
        ChunkedCrossEntropy(chunk_size=0)


def test_chunked_cross_entropy_handles_a_bias_a_frozen_head_and_a_scaled_loss():
    torch.manual_seed(1)
    hidden = torch.randn(2, 5, 8, requires_grad=True)
    weight = torch.randn(VOCAB, 8)
    bias = torch.randn(VOCAB, requires_grad=True)
    labels = torch.randint(0, VOCAB, (2, 5))
    (3 * MaskedCrossEntropy()(hidden @ weight.T + bias, labels)).backward()
    expected = (hidden.grad.clone(), bias.grad.clone())
    hidden.grad, bias.grad = None, None
    (3 * ChunkedCrossEntropy(chunk_size=3)(hidden, weight, labels, bias=bias)).backward()
    assert torch.allclose(expected[0], hidden.grad, atol=1e-5)
    assert torch.allclose(expected[1], bias.grad, atol=1e-5)
    assert weight.grad is None


def test_chunked_cross_entropy_in_bfloat16_keeps_the_dtypes_and_is_close_to_fp32():
    torch.manual_seed(2)
    hidden = torch.randn(1, 12, 16, requires_grad=True)
    weight = torch.randn(VOCAB, 16, requires_grad=True)
    labels = torch.randint(0, VOCAB, (1, 12))
    reference = ChunkedCrossEntropy(chunk_size=5)(hidden, weight, labels)
    low = [t.detach().bfloat16().requires_grad_() for t in (hidden, weight)]
    loss = ChunkedCrossEntropy(chunk_size=5)(low[0], low[1], labels)
    loss.backward()
    assert loss.dtype == torch.float32 and low[0].grad.dtype == low[1].grad.dtype == torch.bfloat16
    assert abs(float(loss.detach()) - float(reference.detach())) < 0.05
