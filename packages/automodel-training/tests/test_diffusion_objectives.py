"""Flow matching and DDPM objectives: per-sample randomness, sampling statistics, shifts, targets, errors."""

from __future__ import annotations

import math

import pytest
import torch

from automodel.training import TrainingError
from automodel.training.diffusion import (
    DDPMObjective,
    FlowMatchingObjective,
    alphas_cumprod_from_config,
    objective_from_scheduler_config,
)
from automodel.training.diffusion.sigmas import apply_resolution_shift, apply_static_shift, loss_weights, resolution_mu


def batch(size: int, shape=(4, 8, 8), start: int = 0) -> dict:
    """Samples ``start .. start + size`` of a fixed synthetic set (latents, prompt embeddings, a string key)."""
    generators = [torch.Generator().manual_seed(1000 + i) for i in range(start, start + size)]
    return {
        "indices": torch.arange(start, start + size),
        "latents": torch.stack([torch.randn(shape, generator=g) for g in generators]),
        "prompt_embeds": torch.stack([torch.randn(5, 6, generator=g) for g in generators]),
        "pooled_prompt_embeds": torch.stack([torch.randn(6, generator=g) for g in generators]),
        "prompts": ["a cat"] * size,
    }


def sigmas_of(objective: FlowMatchingObjective, count: int = 4000, shape=(1, 2, 2)) -> torch.Tensor:
    return objective.draw(batch(count, shape), step=0).sigmas


@pytest.mark.parametrize(
    "objective",
    [
        FlowMatchingObjective(seed=5, caption_dropout=0.5, null_conditioning={}),
        DDPMObjective(alphas_cumprod=alphas_cumprod_from_config({}), seed=5),
    ],
    ids=["flow", "ddpm"],
)
def test_draws_depend_on_seed_step_and_index_only(objective) -> None:
    objective.null_conditioning = {"prompt_embeds": torch.zeros(5, 6), "pooled_prompt_embeds": torch.zeros(6)}
    whole = batch(4)
    torch.manual_seed(123)
    together = objective.draw(whole, step=7)
    torch.manual_seed(999)
    parts = [objective.draw(batch(2), step=7), objective.draw(batch(2, start=2), step=7)]
    for field in ("noisy", "timesteps", "target", "weights", "dropped"):
        torch.testing.assert_close(
            getattr(together, field), torch.cat([getattr(p, field) for p in parts]), rtol=0, atol=0
        )
    for key, value in together.conditioning.items():
        torch.testing.assert_close(value, torch.cat([p.conditioning[key] for p in parts]), rtol=0, atol=0)
    assert not torch.equal(objective.draw(whole, step=8).noisy, together.noisy)
    assert torch.equal(objective.draw(whole, step=7).noisy, together.noisy)
    objective.seed = 6
    assert not torch.equal(objective.draw(whole, step=7).noisy, together.noisy)


def test_flow_matching_noisy_latents_target_and_timesteps() -> None:
    data = batch(16)
    draw = FlowMatchingObjective(num_train_timesteps=500).draw(data, step=0)
    sigma = draw.sigmas.view(-1, 1, 1, 1)
    noise = draw.target + data["latents"]
    torch.testing.assert_close(draw.noisy, (1 - sigma) * data["latents"] + sigma * noise)
    torch.testing.assert_close(draw.timesteps, draw.sigmas * 500)
    assert draw.noisy.shape == draw.target.shape == data["latents"].shape
    assert draw.timesteps.dtype == torch.float32 and draw.timesteps.shape == (16,)
    assert ((draw.sigmas >= 1 / 500) & (draw.sigmas <= 1)).all()
    assert abs(float(noise.mean())) < 0.1 and abs(float(noise.std()) - 1) < 0.05
    torch.testing.assert_close(draw.weights, torch.ones(16))
    assert draw.conditioning.keys() == {"prompt_embeds", "pooled_prompt_embeds"}


def test_posterior_samples_are_the_means_plus_std_times_normal_noise_per_sample_and_step() -> None:
    data = batch(512, shape=(1, 2, 2))
    data["latents_std"] = torch.full_like(data["latents"], 0.5)
    means, samples = FlowMatchingObjective(seed=3), FlowMatchingObjective(seed=3, posterior="sample")
    # the same timesteps and noise as training on the means: only the clean latents move
    eps = (means.draw(data, 7).target - samples.draw(data, 7).target) / 0.5
    torch.testing.assert_close(samples.draw(data, 7).sigmas, means.draw(data, 7).sigmas, rtol=0, atol=0)
    assert abs(float(eps.mean())) < 0.1 and abs(float(eps.std()) - 1) < 0.05
    assert "latents_std" not in samples.draw(data, 7).conditioning
    at_step_8 = (means.draw(data, 8).target - samples.draw(data, 8).target) / 0.5
    assert float((at_step_8 - eps).abs().mean()) > 0.5
    split = [{**batch(256, (1, 2, 2), start), "latents_std": data["latents_std"][:256]} for start in (0, 256)]
    torch.testing.assert_close(
        samples.draw(data, 7).noisy, torch.cat([samples.draw(b, 7).noisy for b in split]), rtol=0, atol=0
    )
    zero_std = {**data, "latents_std": torch.zeros_like(data["latents"])}
    torch.testing.assert_close(samples.draw(zero_std, 7).noisy, means.draw(data, 7).noisy, rtol=0, atol=0)
    ddpm = {p: DDPMObjective(alphas_cumprod=alphas_cumprod_from_config({}), posterior=p) for p in ("mean", "sample")}
    torch.testing.assert_close(ddpm["sample"].draw(zero_std, 7).noisy, ddpm["mean"].draw(data, 7).noisy, rtol=0, atol=0)
    assert not torch.equal(ddpm["sample"].draw(data, 7).noisy, ddpm["mean"].draw(data, 7).noisy)


def test_bf16_latents_keep_their_dtype_and_the_target_is_float32() -> None:
    data = batch(4)
    data["latents"] = data["latents"].bfloat16()
    draw = FlowMatchingObjective().draw(data, step=0)
    assert draw.noisy.dtype == torch.bfloat16 and draw.target.dtype == torch.float32


def test_timestep_sampling_statistics() -> None:
    uniform = sigmas_of(FlowMatchingObjective(timestep_sampling="uniform"))
    assert abs(float(uniform.mean()) - 0.5) < 0.02 and abs(float(uniform.var()) - 1 / 12) < 0.005

    logit_normal = sigmas_of(FlowMatchingObjective())
    logits = torch.logit(logit_normal.double())
    assert abs(float(logit_normal.median()) - 0.5) < 0.02
    assert abs(float(logits.mean())) < 0.05 and abs(float(logits.std()) - 1) < 0.05

    moved = sigmas_of(FlowMatchingObjective(logit_mean=1.0, logit_std=0.5))
    assert abs(float(moved.median()) - 1 / (1 + math.exp(-1))) < 0.02
    assert abs(float(torch.logit(moved.double()).std()) - 0.5) < 0.03

    sigmoid = sigmas_of(FlowMatchingObjective(timestep_sampling="sigmoid", sigmoid_scale=2.0))
    assert abs(float(torch.logit(sigmoid.double()).std()) - 2.0) < 0.1

    # Mode sampling maps u ~ U[0, 1) by a decreasing function f, so its q-quantile is f(1 - q).
    mode = sigmas_of(FlowMatchingObjective(timestep_sampling="mode", mode_scale=1.29))
    f = lambda u: 1 - u - 1.29 * (math.cos(math.pi * u / 2) ** 2 - 1 + u)  # noqa: E731
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert abs(float(mode.quantile(q)) - f(1 - q)) < 0.02


def test_static_shift_hand_values_and_mass_moves_up() -> None:
    sigmas = torch.tensor([0.0, 0.25, 0.5, 1.0])
    torch.testing.assert_close(apply_static_shift(sigmas, 3.0), torch.tensor([0.0, 0.5, 0.75, 1.0]))
    torch.testing.assert_close(apply_static_shift(sigmas, 1.0), sigmas)
    plain = sigmas_of(FlowMatchingObjective())
    shifted = sigmas_of(FlowMatchingObjective(flow_shift=3.0))
    torch.testing.assert_close(shifted, apply_static_shift(plain, 3.0).clamp(min=1e-3))
    assert abs(float(shifted.median()) - 0.75) < 0.02
    assert (shifted >= plain).all()


def test_resolution_shift_hand_values() -> None:
    settings = {"base_shift": 0.5, "max_shift": 1.15, "base_seq_len": 256, "max_seq_len": 4096}
    assert resolution_mu(256, settings) == pytest.approx(0.5)
    assert resolution_mu(4096, settings) == pytest.approx(1.15)
    assert resolution_mu(1024, settings) == pytest.approx(0.5 + 0.65 * 768 / 3840)
    e = math.exp(0.63)
    expected = torch.tensor([0.0, e / (e + 3), e / (e + 1), 1.0])
    torch.testing.assert_close(apply_resolution_shift(torch.tensor([0.0, 0.25, 0.5, 1.0]), 0.63), expected)

    # 64x64 latents with patch size 2: 1024 tokens, mu = 0.63; bigger images shift more.
    data = batch(8, shape=(1, 64, 64))
    plain = FlowMatchingObjective().draw(data, step=0).sigmas
    shifted = FlowMatchingObjective(resolution_shift={}).draw(data, step=0).sigmas
    torch.testing.assert_close(shifted, apply_resolution_shift(plain, 0.63))
    small = FlowMatchingObjective(resolution_shift={}).draw(batch(8, shape=(1, 32, 32)), step=0).sigmas
    assert (small < shifted).all()
    coarse = FlowMatchingObjective(resolution_shift={}, patch_size=4).draw(data, step=0).sigmas
    torch.testing.assert_close(coarse, apply_resolution_shift(plain, 0.5))


def test_loss_weighting_schemes() -> None:
    sigmas = torch.tensor([0.25, 0.5, 1.0])
    torch.testing.assert_close(loss_weights(sigmas, "none"), torch.ones(3))
    torch.testing.assert_close(loss_weights(sigmas, "sigma_sqrt"), torch.tensor([16.0, 4.0, 1.0]))
    torch.testing.assert_close(loss_weights(sigmas, "cosmap"), 2 / (math.pi * torch.tensor([0.625, 0.5, 1.0])))
    draw = FlowMatchingObjective(weighting="sigma_sqrt", timestep_sampling="uniform").draw(batch(400, (1, 2, 2)), 0)
    torch.testing.assert_close(draw.weights, draw.sigmas**-2)
    assert torch.isfinite(draw.weights).all()


def test_losses_are_the_weighted_mse_per_sample() -> None:
    data = batch(3)
    objective = FlowMatchingObjective(weighting="cosmap")

    def model(latents, timesteps, **conditioning):
        return latents * 0.5

    draw = objective.draw(data, step=2)
    expected = ((draw.noisy * 0.5 - draw.target) ** 2).mean(dim=(1, 2, 3)) * draw.weights
    torch.testing.assert_close(objective.losses(model, data, step=2), expected)


def test_caption_dropout_replaces_exactly_the_drawn_samples() -> None:
    null = {"prompt_embeds": torch.full((5, 6), 7.0), "pooled_prompt_embeds": torch.full((6,), -7.0)}
    data = batch(400, (1, 2, 2))
    objective = FlowMatchingObjective(caption_dropout=0.3, null_conditioning=null, seed=2)
    draw = objective.draw(data, step=4)
    dropped = draw.dropped
    assert 0.24 < float(dropped.float().mean()) < 0.36
    for key in null:
        assert (draw.conditioning[key][dropped] == null[key]).all()
        torch.testing.assert_close(draw.conditioning[key][~dropped], data[key][~dropped], rtol=0, atol=0)
    # The uniform draw decides the drop; noise and timesteps do not depend on the dropout setting.
    plain = FlowMatchingObjective(seed=2).draw(data, step=4)
    assert torch.equal(plain.noisy, draw.noisy) and not plain.dropped.any()
    higher = FlowMatchingObjective(caption_dropout=0.6, null_conditioning=null, seed=2).draw(data, step=4)
    assert (higher.dropped | ~dropped).all()

    everyone = DDPMObjective(alphas_cumprod=alphas_cumprod_from_config({}), caption_dropout=1.0, null_conditioning=null)
    assert everyone.draw(data, step=0).dropped.all()


def test_caption_dropout_needs_complete_null_conditioning() -> None:
    objective = FlowMatchingObjective(caption_dropout=0.1)
    with pytest.raises(TrainingError, match=r"caption_dropout=0\.1 needs null_conditioning"):
        objective.draw(batch(2), step=0)
    objective.null_conditioning = {"prompt_embeds": torch.zeros(5, 6)}
    with pytest.raises(TrainingError, match=r"lacks the conditioning keys \['pooled_prompt_embeds'\]"):
        objective.draw(batch(2), step=0)


def test_ddpm_noisy_latents_and_targets() -> None:
    alphas = alphas_cumprod_from_config({"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012})
    data = batch(300, (1, 2, 2))
    epsilon = DDPMObjective(alphas_cumprod=alphas).draw(data, step=1)
    v = DDPMObjective(alphas_cumprod=alphas, prediction_type="v_prediction").draw(data, step=1)
    t = epsilon.timesteps.long()
    assert torch.equal(epsilon.timesteps, t.float()) and t.min() >= 0 and t.max() < 1000
    assert abs(float(epsilon.timesteps.mean()) - 499.5) < 40
    a = alphas[t].view(-1, 1, 1, 1)
    x, noise = data["latents"], epsilon.target
    torch.testing.assert_close(epsilon.noisy, a.sqrt() * x + (1 - a).sqrt() * noise)
    torch.testing.assert_close(v.noisy, epsilon.noisy)
    torch.testing.assert_close(v.target, a.sqrt() * noise - (1 - a).sqrt() * x)


def test_alphas_cumprod_match_diffusers_values() -> None:
    # DDPMScheduler(**config).alphas_cumprod[[0, 250, 500, 999]] from diffusers 0.42.
    cases = [
        ({}, [0.99989998, 0.52142298, 0.07779665, 4.036e-05]),
        (
            {"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012},
            [0.99914998, 0.6737923, 0.27633247, 0.0046601],
        ),
        ({"beta_schedule": "squaredcos_cap_v2"}, [0.99995869, 0.84588802, 0.49228504, 0.0]),
        (
            {
                "beta_schedule": "scaled_linear",
                "beta_start": 0.00085,
                "beta_end": 0.012,
                "rescale_betas_zero_snr": True,
            },
            [0.99914998, 0.65245676, 0.24101864, 0.0],
        ),
    ]
    for config, expected in cases:
        values = alphas_cumprod_from_config(config)[[0, 250, 500, 999]]
        torch.testing.assert_close(values, torch.tensor(expected), atol=1e-7, rtol=1e-5)
    # The cosine schedule telescopes: alphas_cumprod[t] = alpha_bar((t + 1) / T) / alpha_bar(0) until the cap.
    alpha_bar = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    cosine = alphas_cumprod_from_config({"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 100})
    expected = torch.tensor([alpha_bar((t + 1) / 100) / alpha_bar(0) for t in range(90)])
    torch.testing.assert_close(cosine[:90], expected, atol=1e-5, rtol=0)
    trained = alphas_cumprod_from_config({"trained_betas": [0.1, 0.5], "beta_schedule": "unknown"})
    torch.testing.assert_close(trained, torch.tensor([0.9, 0.45]))


def test_validation_losses_are_fixed_and_average_the_timesteps() -> None:
    data = batch(4)

    def model(latents, timesteps, **conditioning):
        return latents * timesteps.view(-1, 1, 1, 1) / 1000

    for objective, fixed in (
        (FlowMatchingObjective(caption_dropout=0.5, null_conditioning={}), [0.2, 0.9]),
        (DDPMObjective(alphas_cumprod=alphas_cumprod_from_config({})), [10, 900]),
    ):
        both = objective.validation_losses(model, data, fixed)
        assert torch.equal(both, objective.validation_losses(model, data, fixed))
        each = [objective.validation_losses(model, data, [t]) for t in fixed]
        torch.testing.assert_close(both, (each[0] + each[1]) / 2)
        assert not torch.equal(each[0], each[1])
        first_two = objective.validation_losses(model, {k: v[:2] for k, v in data.items()}, fixed)
        torch.testing.assert_close(first_two, both[:2], rtol=0, atol=0)


def test_objective_from_scheduler_config() -> None:
    sd3 = objective_from_scheduler_config(
        {"_class_name": "FlowMatchEulerDiscreteScheduler", "shift": 3.0, "num_train_timesteps": 1000},
        {"timestep_sampling": "mode", "caption_dropout": 0.1},
    )
    assert isinstance(sd3, FlowMatchingObjective)
    assert (sd3.flow_shift, sd3.timestep_sampling, sd3.caption_dropout) == (3.0, "mode", 0.1)
    flux_config = {
        "_class_name": "FlowMatchEulerDiscreteScheduler",
        "shift": 3.0,
        "use_dynamic_shifting": True,
        "base_shift": 0.5,
        "max_shift": 1.15,
        "base_image_seq_len": 256,
        "max_image_seq_len": 4096,
    }
    flux = objective_from_scheduler_config(flux_config, {})
    assert flux.flow_shift == 1.0
    assert flux.resolution_shift == {"base_shift": 0.5, "max_shift": 1.15, "base_seq_len": 256, "max_seq_len": 4096}
    assert objective_from_scheduler_config(flux_config, {"flow_shift": 2.0}).resolution_shift is None

    unet = objective_from_scheduler_config(
        {"_class_name": "DDPMScheduler", "beta_schedule": "scaled_linear", "prediction_type": "v_prediction"},
        {"seed": 4},
    )
    assert isinstance(unet, DDPMObjective)
    assert (unet.prediction_type, unet.seed, unet.num_train_timesteps) == ("v_prediction", 4, 1000)
    with pytest.raises(TrainingError, match=r"Unknown DDPMObjective settings \['timestep_sampling'\]"):
        objective_from_scheduler_config({"_class_name": "EulerDiscreteScheduler"}, {"timestep_sampling": "mode"})
    with pytest.raises(TrainingError, match=r"Unknown FlowMatchingObjective settings \['shift'\]"):
        objective_from_scheduler_config({"_class_name": "FlowMatchEulerDiscreteScheduler"}, {"shift": 3.0})


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: FlowMatchingObjective(timestep_sampling="cosine"),
            "timestep_sampling must be one of uniform, logit_normal, mode, sigmoid; got 'cosine'",
        ),
        (
            lambda: FlowMatchingObjective(weighting="snr"),
            "weighting must be one of none, sigma_sqrt, cosmap; got 'snr'",
        ),
        (lambda: FlowMatchingObjective(flow_shift=3.0, resolution_shift={}), "Set either flow_shift"),
        (lambda: FlowMatchingObjective(flow_shift=0.0), "flow_shift must be above 0"),
        (
            lambda: FlowMatchingObjective(caption_dropout=1.5),
            r"caption_dropout must be a probability in \[0, 1\], got 1.5",
        ),
        (lambda: FlowMatchingObjective(resolution_shift={"mu": 1.0}), r"got unknown \['mu'\]"),
        (lambda: FlowMatchingObjective(resolution_shift={"max_seq_len": 100}), "must exceed base_seq_len"),
        (
            lambda: DDPMObjective(alphas_cumprod=torch.ones(3), prediction_type="sample"),
            "prediction_type must be one of epsilon, v_prediction; got 'sample'",
        ),
        (
            lambda: alphas_cumprod_from_config({"beta_schedule": "sigmoid"}),
            "beta_schedule must be one of linear, scaled_linear, squaredcos_cap_v2; got 'sigmoid'",
        ),
        (lambda: DDPMObjective.from_scheduler_config({"prediction_type": "sample"}), "got 'sample'"),
        (lambda: FlowMatchingObjective().validation_losses(None, batch(1), [0.0]), r"noise levels in \(0, 1\]"),
        (
            lambda: DDPMObjective(alphas_cumprod=torch.ones(10)).validation_losses(None, batch(1), [10]),
            r"integers in \[0, 10\)",
        ),
        (lambda: FlowMatchingObjective().draw({"latents": torch.zeros(1, 1, 2, 2)}, 0), r"lacks \['indices'\]"),
        (lambda: FlowMatchingObjective(posterior="mode"), "posterior must be one of mean, sample; got 'mode'"),
        (lambda: FlowMatchingObjective(posterior="sample").draw(batch(1), 0), "needs 'latents_std' beside 'latents'"),
    ],
)
def test_bad_settings_raise_training_error(build, message) -> None:
    with pytest.raises(TrainingError, match=message):
        build()
