"""train.diffusion end to end in one process: the loss falls, diffusers loads the saved pipeline and draws
the same images as the recipe, the EMA sits beside it, and a resumed run ends where an uninterrupted one does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline, SD3Transformer2DModel
from diffusion_recipe_helpers import PIPELINE, losses, read_jsonl, run, t2i_config
from PIL import Image
from safetensors.torch import load_file

from automodel.config import ConfigError
from automodel.models import sample_images

STEPS = 6


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    steps = {"global_batch_size": 16, "local_batch_size": 8, "max_steps": STEPS, "log_interval": 1}
    return run(t2i_config(out, step_scheduler={**steps, "val_check_interval": STEPS})), out


def test_the_held_out_loss_at_fixed_noise_falls(trained):
    _, out = trained
    records = read_jsonl(out / "validation.jsonl")
    assert [r["step"] for r in records] == [0, STEPS]
    assert records[-1]["val_loss"] < 0.9 * records[0]["val_loss"]
    assert {"val_loss_t0.25", "val_loss_t0.5", "val_loss_t0.75"} <= records[-1].keys()


def test_diffusers_loads_the_saved_pipeline_and_draws_the_recipes_images(trained):
    recipe, out = trained
    samples = out / "samples" / f"step_{STEPS:06d}"
    record = json.loads((samples / "prompts.json").read_text())
    prompts, seed = record.pop("prompts"), record.pop("seed")
    ours = sample_images(recipe.trainable.pipeline, prompts, seed=seed, output_type="np", **record)
    pipe = DiffusionPipeline.from_pretrained(out / f"step_{STEPS:06d}" / "model")
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    theirs = pipe(prompts, generator=generators, output_type="np", **record).images
    assert type(pipe).__name__ == "StableDiffusion3Pipeline"
    np.testing.assert_allclose(theirs, ours, atol=1e-4)
    written = np.stack([np.asarray(Image.open(samples / f"{i:03d}.png")) for i in range(len(prompts))])
    assert np.abs(written.astype(int) - np.round(ours * 255).astype(int)).max() <= 1


def test_the_frozen_components_are_the_source_files_and_the_denoiser_is_new(trained):
    _, out = trained
    model = out / f"step_{STEPS:06d}" / "model"
    assert (model / "vae" / "diffusion_pytorch_model.safetensors").read_bytes() == (
        PIPELINE / "vae" / "diffusion_pytorch_model.safetensors"
    ).read_bytes()
    assert json.loads((model / "model_index.json").read_text()) == json.loads(
        (PIPELINE / "model_index.json").read_text()
    )
    config = json.loads((model / "transformer" / "config.json").read_text())
    assert config["num_layers"] == 2 and config["_class_name"] == "SD3Transformer2DModel"


def test_the_ema_is_saved_beside_the_model_and_loads_in_diffusers(trained):
    recipe, out = trained
    ema = SD3Transformer2DModel.from_pretrained(out / f"step_{STEPS:06d}" / "ema" / "transformer")
    model = SD3Transformer2DModel.from_pretrained(out / f"step_{STEPS:06d}" / "model" / "transformer")
    shadows = recipe.ema.shadow_state_dict()
    ema_state, model_state = ema.state_dict(), model.state_dict()
    assert shadows and all(torch.equal(ema_state[name], shadow) for name, shadow in shadows.items())
    assert any(not torch.equal(ema_state[name], model_state[name]) for name in shadows)


def test_a_resumed_run_ends_with_the_uninterrupted_weights_and_ema(tmp_path):
    steps = {"global_batch_size": 16, "local_batch_size": 8, "max_steps": STEPS, "log_interval": 1}
    short = {"validation_dataset": None, "validation": None}
    run(t2i_config(tmp_path / "whole", step_scheduler=steps, **short))
    run(t2i_config(tmp_path / "cut", step_scheduler={**steps, "max_steps": 3}, **short))
    run(t2i_config(tmp_path / "cut", step_scheduler=steps, restore_from={"path": "latest"}, **short))
    assert losses(tmp_path / "cut") == pytest.approx(losses(tmp_path / "whole"), abs=1e-6)
    for folder in ("model", "ema"):
        name = f"step_{STEPS:06d}/{folder}/transformer/diffusion_pytorch_model.safetensors"
        whole, cut = load_file(tmp_path / "whole" / name), load_file(tmp_path / "cut" / name)
        assert all(torch.equal(whole[k], cut[k]) for k in whole), folder


@pytest.mark.parametrize(
    ("sections", "named"),
    [
        ({"parallel_scheme": "megatron"}, "parallel_scheme"),
        ({"dataset": {"_target_": "automodel.data.diffusion.ImageCaptionDataset", "resolution": 33}}, "dataset"),
    ],
)
def test_bad_settings_are_errors_naming_the_key(tmp_path, sections, named):
    if "dataset" in sections:
        sections["dataset"]["path_or_dataset_id"] = str(PIPELINE.parents[1] / "t2i_shapes" / "train")
    with pytest.raises(ConfigError, match=named) as error:
        run(t2i_config(tmp_path, **sections))
    assert "ddp, fsdp2" in str(error.value) or "multiples of 4" in str(error.value)


def test_a_folder_that_is_not_a_diffusers_pipeline_is_an_error_naming_the_model(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    model = {
        "_target_": "automodel.models.AutoDiffusionPipeline.from_pretrained",
        "pretrained_model_name_or_path": str(tmp_path),
    }
    with pytest.raises(Exception, match=r"model_index\.json") as error:
        run(t2i_config(tmp_path / "out", model=model))
    assert getattr(error.value, "user_error", False)
