"""ExponentialMovingAverage against closed forms, its state_dict round trip and swapping EMA weights in."""

from __future__ import annotations

import io

import pytest
import torch

from automodel.training import TrainingError
from automodel.training.diffusion import ExponentialMovingAverage


def small_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    model[0].bias.requires_grad_(False)
    return model


def set_params(model: torch.nn.Module, value: float) -> None:
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.fill_(value)


def test_constant_parameters_are_approached_geometrically() -> None:
    model = small_model()
    start = {name: p.detach().clone() for name, p in model.named_parameters()}
    ema = ExponentialMovingAverage(model.named_parameters(), decay=0.9)
    assert ema.names == ["0.weight", "1.weight", "1.bias"]
    set_params(model, 2.0)
    for _ in range(5):
        ema.update()
    for name, shadow in ema.shadow_state_dict().items():
        torch.testing.assert_close(shadow, 0.9**5 * start[name] + (1 - 0.9**5) * 2.0)
    assert int(ema.num_updates) == 5


def test_decay_schedule_with_update_after_step_and_warmup() -> None:
    model = small_model()
    ema = ExponentialMovingAverage(model.named_parameters(), decay=0.5, update_after_step=2, warmup=True)
    shadow = 0.0
    decays = []
    for k in range(12):
        set_params(model, float(k))
        decays.append(ema.current_decay())
        ema.update()
        n = k - 2  # averaging updates before this one
        decay = 0.0 if n < 0 else min(0.5, (1 + n) / (10 + n))
        shadow = decay * shadow + (1 - decay) * k
        for value in ema.shadows:
            torch.testing.assert_close(value, torch.full_like(value, shadow))
    assert decays == [0.0, 0.0, 0.1, 2 / 11, 3 / 12, 4 / 13, 5 / 14, 6 / 15, 7 / 16, 8 / 17, 0.5, 0.5]


def test_state_dict_round_trips_exactly() -> None:
    model = small_model()
    ema = ExponentialMovingAverage(model.named_parameters(), decay=0.7, warmup=True)
    for k in range(3):
        set_params(model, k * 0.3)
        ema.update()
    state = ema.state_dict()
    assert sorted(state) == ["num_updates", "shadow_0", "shadow_1", "shadow_2"]
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)

    resumed_model = small_model(seed=1)
    set_params(resumed_model, 0.6)
    resumed = ExponentialMovingAverage(resumed_model.named_parameters(), decay=0.7, warmup=True)
    resumed.load_state_dict(torch.load(buffer))
    assert int(resumed.num_updates) == 3 and resumed.current_decay() == ema.current_decay()
    for a, b in zip(ema.shadows, resumed.shadows, strict=True):
        assert torch.equal(a, b)
    set_params(model, 1.0)
    set_params(resumed_model, 1.0)
    ema.update()
    resumed.update()
    for a, b in zip(ema.shadows, resumed.shadows, strict=True):
        assert torch.equal(a, b)


def test_copy_to_and_swapped() -> None:
    model = small_model()
    ema = ExponentialMovingAverage(model.named_parameters(), decay=0.5)
    set_params(model, 4.0)
    ema.update()
    trained = [p.detach().clone() for p in model.parameters()]
    inputs = torch.randn(2, 3)
    with ema.swapped():
        swapped_weight = model[1].weight.detach().clone()
        assert torch.equal(swapped_weight, ema.shadows[1])
    for before, after in zip(trained, model.parameters(), strict=True):
        assert torch.equal(before, after)

    other = small_model(seed=5)
    frozen = other[0].bias.detach().clone()
    ema.copy_to(other.named_parameters())
    assert torch.equal(other[1].weight, ema.shadows[1]) and torch.equal(other[0].bias, frozen)
    with torch.no_grad():
        other[0].bias.copy_(model[0].bias)  # the frozen bias is not averaged
    with ema.swapped():
        torch.testing.assert_close(model(inputs), other(inputs))
    with pytest.raises(KeyError, match=r"1\.bias"):
        ema.copy_to([("0.weight", other[0].weight)])


def test_bf16_parameters_with_float32_shadows() -> None:
    model = small_model().bfloat16()
    ema = ExponentialMovingAverage(model.named_parameters(), decay=0.999, dtype=torch.float32)
    start = ema.shadows[0].clone()
    set_params(model, 1.0)
    ema.update()
    assert ema.shadows[0].dtype == torch.float32
    torch.testing.assert_close(ema.shadows[0], 0.999 * start + 0.001)


def test_decay_must_be_a_probability() -> None:
    with pytest.raises(TrainingError, match=r"ema decay must be a probability in \[0, 1\], got 1.5"):
        ExponentialMovingAverage(small_model().named_parameters(), decay=1.5)
