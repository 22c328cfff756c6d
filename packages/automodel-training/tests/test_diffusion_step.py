"""diffusion_train_step and diffusion_validation_loss on a tiny conv denoiser, in one process and on two gloo ranks."""

from __future__ import annotations

import multiprocessing
import socket

import pytest
import torch
from test_diffusion_workers import (
    GLOBAL_BATCH,
    STEPS,
    TinyDenoiser,
    dataset,
    ema_data,
    ema_model,
    make_ema,
    rows,
    train_ema_model,
    two_rank_worker,
)

from automodel.training.diffusion import (
    DDPMObjective,
    ExponentialMovingAverage,
    FlowMatchingObjective,
    alphas_cumprod_from_config,
    diffusion_train_step,
    diffusion_validation_loss,
)


def _steps(micro_batches, objective, steps=STEPS, ema=None):
    model = TinyDenoiser()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    results = [
        diffusion_train_step(model, micro_batches, objective, optimizer, step=s, max_grad_norm=1.0, ema=ema)
        for s in range(steps)
    ]
    return model, results


def test_training_lowers_the_loss_on_fixed_latents() -> None:
    data = dataset()
    objective = FlowMatchingObjective(timestep_sampling="uniform", seed=1)
    model = TinyDenoiser()
    before = diffusion_validation_loss(model, [data], objective)["val_loss"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    results = [diffusion_train_step(model, [data], objective, optimizer, step=s) for s in range(60)]
    after = diffusion_validation_loss(model, [data], objective)["val_loss"]
    assert after < 0.8 * before
    assert sum(r.loss for r in results[-10:]) < 0.8 * sum(r.loss for r in results[:10])
    assert results[0].num_label_tokens == 8 and results[0].num_tokens == 8


def test_ddpm_training_lowers_the_loss() -> None:
    data = dataset()
    objective = DDPMObjective.from_scheduler_config({"beta_schedule": "scaled_linear", "beta_end": 0.012})
    model = TinyDenoiser()
    before = diffusion_validation_loss(model, [data], objective)["val_loss"]
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for s in range(40):
        diffusion_train_step(model, [data], objective, optimizer, step=s)
    assert diffusion_validation_loss(model, [data], objective)["val_loss"] < 0.8 * before


def test_step_loss_is_the_mean_per_sample_and_accumulation_matches_one_batch() -> None:
    data = rows(dataset(), 0, GLOBAL_BATCH)
    objective = FlowMatchingObjective(seed=11, weighting="cosmap")
    whole_model, whole = _steps([data], objective)
    split_model, split = _steps([rows(data, 0, 1), rows(data, 1, 4)], objective)
    for a, b in zip(whole, split, strict=True):
        assert a.loss == pytest.approx(b.loss, abs=1e-6)
        assert a.grad_norm == pytest.approx(b.grad_norm, abs=1e-5)
    for a, b in zip(whole_model.parameters(), split_model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0)

    model = TinyDenoiser()
    expected = objective.losses(model, data, 0).mean().detach()
    result = diffusion_train_step(model, [data], objective, torch.optim.SGD(model.parameters(), lr=0.0), step=0)
    assert result.loss == pytest.approx(float(expected), abs=1e-6)


def test_step_updates_the_ema_after_the_optimizer() -> None:
    data = rows(dataset(), 0, GLOBAL_BATCH)
    model = TinyDenoiser()
    ema = ExponentialMovingAverage(model.named_parameters(), decay=0.5)
    start = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    diffusion_train_step(model, [data], FlowMatchingObjective(), optimizer, step=0, ema=ema)
    for shadow, before, after in zip(ema.shadows, start, model.parameters(), strict=True):
        torch.testing.assert_close(shadow, (before + after.detach()) / 2)
    assert int(ema.num_updates) == 1


def test_validation_loss_is_repeatable_per_timestep_and_restores_the_mode() -> None:
    data = dataset()
    loader = [rows(data, 0, 3), rows(data, 3, 8)]
    model = TinyDenoiser().train()
    objective = FlowMatchingObjective(timestep_sampling="mode", flow_shift=3.0, caption_dropout=0.0)
    first = diffusion_validation_loss(model, loader, objective)
    second = diffusion_validation_loss(model, [data], objective)
    assert model.training
    assert set(first) == {"val_loss", "val_samples", "val_loss_t0.25", "val_loss_t0.5", "val_loss_t0.75"}
    assert first["val_samples"] == 8
    for key in first:
        assert first[key] == pytest.approx(second[key], abs=1e-6)
    parts = [first[f"val_loss_t{t}"] for t in ("0.25", "0.5", "0.75")]
    assert first["val_loss"] == pytest.approx(sum(parts) / 3)
    assert parts[0] != parts[1] != parts[2]
    # A training step in between does not move the validation noise: only the weights changed.
    _steps([data], objective, steps=1)
    assert diffusion_validation_loss(model, loader, objective) == first

    single = diffusion_validation_loss(model, loader, objective, timesteps=[0.5])
    assert single["val_loss"] == pytest.approx(first["val_loss_t0.5"], abs=1e-6)

    ddpm = DDPMObjective(alphas_cumprod=alphas_cumprod_from_config({}))
    assert sorted(diffusion_validation_loss(model, loader, ddpm)) == [
        "val_loss",
        "val_loss_t250",
        "val_loss_t500",
        "val_loss_t750",
        "val_samples",
    ]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_gloo_ranks_give_the_one_process_losses_and_fsdp2_ema(tmp_path) -> None:
    context = multiprocessing.get_context("forkserver")
    # Children fork from a server that imported these once; DDP's constructor imports torch._dynamo (seconds).
    context.set_forkserver_preload(
        ["torch", "torch._dynamo", "torch.distributed.fsdp", "automodel.training", "test_diffusion_workers"]
    )
    port = _free_port()
    ranks = [context.Process(target=two_rank_worker, args=(rank, port, str(tmp_path))) for rank in range(2)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=120)
    assert [p.exitcode for p in ranks] == [0, 0]
    results = [torch.load(tmp_path / f"rank{rank}.pt") for rank in range(2)]

    _, reference = _steps([rows(dataset(), 0, GLOBAL_BATCH)], FlowMatchingObjective(seed=11))
    for result in results:
        assert result["losses"] == pytest.approx([r.loss for r in reference], abs=1e-6)

    model = ema_model()
    ema = make_ema(model)
    inputs, targets = ema_data()
    train_ema_model(model, ema, inputs, targets, total=4)
    with torch.no_grad():
        trained_output = model(inputs)
        ema.copy_to()
        ema_output = model(inputs)
    for result in results:
        assert result["loaded_updates"] == STEPS
        for name, shadow in ema.shadow_state_dict().items():
            torch.testing.assert_close(result["shadows"][name], shadow, atol=1e-6, rtol=0)
            torch.testing.assert_close(result["loaded"][name], shadow, atol=1e-6, rtol=0)
        torch.testing.assert_close(result["swapped_output"], ema_output, atol=1e-6, rtol=0)
        torch.testing.assert_close(result["restored_output"], trained_output, atol=1e-6, rtol=0)
