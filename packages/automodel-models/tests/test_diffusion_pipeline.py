"""AutoDiffusionPipeline and the diffusion helpers on a tiny Stable Diffusion 3 pipeline built offline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline

from automodel.models import (
    AutoDiffusionPipeline,
    DenoiserForTraining,
    ModelError,
    build_tiny_sd3_pipeline,
    encode_image_posteriors,
    encode_images,
    encode_prompts,
    sample_images,
    sampling_arguments,
)

WORDS = ["a", "red", "blue", "circle", "square"]


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_sd3")
    build_tiny_sd3_pipeline(WORDS, seed=0).save_pretrained(folder)
    return folder


def test_from_pretrained_trains_the_denoiser_and_freezes_the_rest(pipeline_dir):
    loaded = AutoDiffusionPipeline.from_pretrained(pipeline_dir)
    assert loaded.denoiser_name == "transformer"
    assert loaded.train_components == ("transformer",)
    assert sorted(loaded.frozen_components) == ["text_encoder", "text_encoder_2", "text_encoder_3", "vae"]
    assert all(p.requires_grad for p in loaded.denoiser.parameters())
    for name in loaded.frozen_components:
        module = getattr(loaded.pipeline, name)
        assert not module.training
        assert not any(p.requires_grad for p in module.parameters())


def test_denoiser_only_loads_neither_vae_nor_text_encoders(pipeline_dir):
    loaded = AutoDiffusionPipeline.from_pretrained(pipeline_dir, components="denoiser")
    assert loaded.pipeline.vae is None and loaded.pipeline.text_encoder is None
    assert loaded.denoiser is not None and loaded.pipeline.scheduler is not None
    assert loaded.frozen_components == []


def test_from_config_is_seeded_and_takes_config_overrides(pipeline_dir):
    first = AutoDiffusionPipeline.from_config(pipeline_dir, denoiser_config={"num_layers": 1}, seed=3)
    second = AutoDiffusionPipeline.from_config(pipeline_dir, denoiser_config={"num_layers": 1}, seed=3)
    assert first.denoiser.config.num_layers == 1
    for a, b in zip(first.denoiser.state_dict().values(), second.denoiser.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    pretrained = AutoDiffusionPipeline.from_pretrained(pipeline_dir)
    key = "pos_embed.proj.weight"
    assert not torch.equal(first.denoiser.state_dict()[key], pretrained.denoiser.state_dict()[key])


def test_from_config_refuses_a_key_the_denoiser_does_not_take(pipeline_dir):
    with pytest.raises(ModelError, match="num_blocks"):
        AutoDiffusionPipeline.from_config(pipeline_dir, denoiser_config={"num_blocks": 2})


def test_a_folder_that_is_not_a_pipeline_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelError, match=r"model_index\.json"):
        AutoDiffusionPipeline.from_pretrained(tmp_path)


def test_unknown_train_component_names_the_loaded_ones(pipeline_dir):
    with pytest.raises(ModelError, match="unet"):
        AutoDiffusionPipeline.from_pretrained(pipeline_dir, train_components=["unet"])


def test_encoders_and_denoiser_shapes(pipeline_dir):
    loaded = AutoDiffusionPipeline.from_pretrained(pipeline_dir)
    prompts = encode_prompts(loaded.pipeline, ["a red circle", "a blue square"], max_sequence_length=8)
    assert prompts["prompt_embeds"].shape == (2, 16 + 8, 64)
    assert prompts["pooled_prompt_embeds"].shape == (2, 64)
    assert not torch.allclose(prompts["prompt_embeds"][0], prompts["prompt_embeds"][1])
    latents = encode_images(loaded.pipeline, torch.rand(2, 3, 32, 32) * 2 - 1)
    assert latents.shape == (2, 4, 16, 16)
    denoiser = DenoiserForTraining(loaded.denoiser, "StableDiffusion3Pipeline")
    assert denoiser(latents, torch.tensor([500.0, 100.0]), **prompts).shape == latents.shape
    with pytest.raises(ModelError, match="multiples of 2"):
        encode_images(loaded.pipeline, torch.zeros(1, 3, 31, 32))


def test_image_posteriors_are_the_vaes_mean_and_std_on_the_denoisers_scale(pipeline_dir):
    pipeline = AutoDiffusionPipeline.from_pretrained(pipeline_dir).pipeline
    vae, pixels = pipeline.vae, torch.rand(3, 3, 32, 32) * 2 - 1
    posteriors = encode_image_posteriors(pipeline, pixels)
    torch.testing.assert_close(posteriors["latents"], encode_images(pipeline, pixels))
    shift, scale = vae.config.get("shift_factor") or 0.0, vae.config.scaling_factor
    torch.manual_seed(0)
    with torch.no_grad():  # diffusers' own sampling, moved to the denoiser's scale, has that mean and spread
        draws = torch.stack([(vae.encode(pixels).latent_dist.sample() - shift) * scale for _ in range(400)])
    torch.testing.assert_close(
        draws.mean(0), posteriors["latents"], atol=0.15 * float(posteriors["latents_std"].max()), rtol=0
    )
    torch.testing.assert_close(draws.std(0), posteriors["latents_std"], rtol=0.2, atol=1e-6)
    assert (posteriors["latents_std"] > 0).all()


def test_our_samples_equal_those_of_diffusers_loading_the_folder(pipeline_dir):
    loaded = AutoDiffusionPipeline.from_pretrained(pipeline_dir)
    arguments = sampling_arguments(loaded.pipeline, num_inference_steps=3, height=32, width=32, max_sequence_length=8)
    ours = sample_images(loaded.pipeline, ["a red circle", "a blue square"], seed=5, **arguments)
    plain = DiffusionPipeline.from_pretrained(pipeline_dir)
    generators = [torch.Generator().manual_seed(5), torch.Generator().manual_seed(6)]
    theirs = plain(["a red circle", "a blue square"], generator=generators, **arguments).images
    assert ours.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(ours, theirs, atol=1e-6)
