"""KDLoss: Hinton's forward KL over label positions, computed in chunks, equal to the naive full computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from automodel.training import KDLoss

LABELS = torch.tensor([[1, 2, -100, -100, 3, 4, 0], [-100, 4, 5, 6, -100, 2, 2]])


def _logits(seed: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return (3 * torch.randn(2, 7, 13, generator=generator)).to(dtype)


def _naive(student, teacher, labels, temperature=1.0, num_label_tokens=None):
    """KL(teacher || student) at ``temperature``, times temperature^2, over every label position at once."""
    keep = labels != -100
    p_teacher = F.softmax(teacher[keep].double() / temperature, dim=-1)
    log_student = F.log_softmax(student[keep].double() / temperature, dim=-1)
    total = (p_teacher * (p_teacher.log() - log_student)).sum() * temperature**2
    return total / (int(keep.sum()) if num_label_tokens is None else num_label_tokens)


def _value_and_grad(loss_fn, student, teacher, labels, **kwargs):
    student = student.clone().requires_grad_(True)
    loss = loss_fn(student, teacher, labels, **kwargs)
    loss.backward()
    return loss.detach(), student.grad


@pytest.mark.parametrize("chunk_size", [1, 3, 1024])
@pytest.mark.parametrize("temperature", [1.0, 2.5])
def test_equals_the_naive_full_computation_in_value_and_gradient(chunk_size, temperature):
    student, teacher = _logits(0, torch.float32), _logits(1, torch.float32)
    loss_fn = KDLoss(temperature=temperature, chunk_size=chunk_size)
    value, grad = _value_and_grad(loss_fn, student, teacher, LABELS, num_label_tokens=17)
    expected, expected_grad = _value_and_grad(
        lambda s, t, labels, **kw: _naive(s, t, labels, temperature, **kw).float(),
        student,
        teacher,
        LABELS,
        num_label_tokens=17,
    )
    torch.testing.assert_close(value, expected, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(grad, expected_grad, atol=1e-6, rtol=1e-6)


def test_chunking_does_not_change_value_or_gradient():
    student, teacher = _logits(2), _logits(3)
    results = [_value_and_grad(KDLoss(chunk_size=size), student, teacher, LABELS) for size in (1, 2, 5, 1024)]
    for value, grad in results[1:]:
        torch.testing.assert_close(value, results[0][0], atol=1e-6, rtol=0)
        torch.testing.assert_close(grad, results[0][1], atol=1e-6, rtol=0)


def test_ignored_positions_get_no_loss_and_no_gradient():
    student, teacher = _logits(4), _logits(5)
    value, grad = _value_and_grad(KDLoss(chunk_size=2), student, teacher, LABELS)
    ignored = LABELS == -100
    assert grad[ignored].abs().max() == 0
    assert grad[~ignored].abs().max() > 0
    changed = student.clone()
    changed[ignored] = 100.0
    torch.testing.assert_close(KDLoss()(changed, teacher, LABELS), value)
    other = KDLoss(ignore_index=0)(student, teacher, LABELS)
    torch.testing.assert_close(other, _naive(student, teacher, torch.where(LABELS == 0, -100, 1)))


def test_temperature_softens_both_distributions_and_scales_by_its_square():
    student, teacher = _logits(6), _logits(7)
    for temperature in (0.5, 2.0, 4.0):
        scaled = KDLoss(temperature=temperature)(student, teacher, LABELS)
        plain = KDLoss()(student / temperature, teacher / temperature, LABELS)
        torch.testing.assert_close(scaled, plain * temperature**2)


def test_divides_by_the_step_label_count_like_masked_cross_entropy():
    student, teacher = _logits(8), _logits(9)
    mean = KDLoss()(student, teacher, LABELS)
    count = int((LABELS != -100).sum())
    torch.testing.assert_close(KDLoss()(student, teacher, LABELS, num_label_tokens=4 * count), mean / 4)
    torch.testing.assert_close(KDLoss()(student, teacher, LABELS, torch.tensor(count)), mean)


def test_zero_when_the_student_is_the_teacher_and_positive_otherwise():
    logits = _logits(10)
    value, grad = _value_and_grad(KDLoss(temperature=2.0), logits, logits, LABELS)
    assert abs(float(value)) < 1e-12
    assert grad.abs().max() < 1e-12
    assert KDLoss()(_logits(11), logits, LABELS) > 0


def test_low_precision_logits_are_upcast_and_the_gradient_keeps_their_dtype():
    student, teacher = _logits(12, torch.bfloat16), _logits(13, torch.bfloat16)
    value, grad = _value_and_grad(KDLoss(chunk_size=4), student, teacher, LABELS)
    assert value.dtype == torch.float32 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(value, _naive(student, teacher, LABELS).float(), atol=1e-5, rtol=1e-5)


def test_no_label_positions_give_a_differentiable_zero():
    student = _logits(14).requires_grad_(True)
    loss = KDLoss()(student, _logits(15), torch.full((2, 7), -100))
    loss.backward()
    assert float(loss.detach()) == 0 and student.grad.abs().max() == 0


def test_mismatched_vocabularies_and_bad_settings_are_errors():
    with pytest.raises(ValueError, match="must share a vocabulary"):
        KDLoss()(_logits(0), _logits(1)[..., :12], LABELS)
    with pytest.raises(ValueError, match="temperature must be positive"):
        KDLoss(temperature=0)
    with pytest.raises(ValueError, match="chunk_size must be positive"):
        KDLoss(chunk_size=0)
