"""CutCrossEntropy: a clear error without CUDA; on a GPU, the loss and gradients of MaskedCrossEntropy."""

from __future__ import annotations

import pytest
import torch

from automodel.training import CutCrossEntropy, MaskedCrossEntropy, TrainingError


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_it_is_refused_pointing_at_chunked_cross_entropy():
    with pytest.raises(TrainingError, match=r"CutCrossEntropy needs a CUDA GPU .*ChunkedCrossEntropy"):
        CutCrossEntropy()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_it_matches_the_naive_loss_and_gradients_over_label_tokens():
    pytest.importorskip("cut_cross_entropy")
    generator = torch.Generator(device="cuda").manual_seed(0)
    hidden = torch.randn(2, 64, 128, device="cuda", generator=generator).bfloat16().requires_grad_()
    weight = (0.05 * torch.randn(1000, 128, device="cuda", generator=generator)).bfloat16().requires_grad_()
    labels = torch.randint(0, 1000, (2, 64), device="cuda", generator=generator)
    labels[0, :10] = -100
    naive = MaskedCrossEntropy()((hidden @ weight.T), labels, num_label_tokens=200)
    naive_grads = torch.autograd.grad(naive, (hidden, weight))
    cut = CutCrossEntropy(filter_eps=None)(hidden, weight, labels, num_label_tokens=200)
    cut_grads = torch.autograd.grad(cut, (hidden, weight))
    assert cut.item() == pytest.approx(naive.item(), rel=1e-2)
    for got, expected in zip(cut_grads, naive_grads, strict=True):
        assert (got.float() - expected.float()).norm() < 2e-2 * expected.float().norm()
