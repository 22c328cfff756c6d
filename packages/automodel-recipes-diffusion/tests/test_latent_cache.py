"""preprocess.diffusion writes a latent cache; training from it gives the losses of on-the-fly encoding
and loads neither the VAE nor the text encoders; a cache from another setup is an error naming `dataset`."""

from __future__ import annotations

import json
import shutil

import pytest
from diffusion_recipe_helpers import PIPELINE, images, losses, read_jsonl, run, t2i_config

from automodel.config import ConfigError, config_from_dict
from automodel.recipes.diffusion.preprocess import preprocess

STEPS = {"global_batch_size": 16, "local_batch_size": 8, "max_steps": 4, "log_interval": 1, "val_check_interval": 4}


def _preprocess(out, split: str, max_sequence_length: int = 8):
    cfg = {
        "recipe": "preprocess.diffusion",
        "model": {
            "_target_": "automodel.models.AutoDiffusionPipeline.from_pretrained",
            "pretrained_model_name_or_path": str(PIPELINE),
        },
        "dataset": images(split),
        "prompts": {"max_sequence_length": max_sequence_length},
        "latent_cache": {"dir": str(out / split), "batch_size": 32, "samples_per_shard": 200},
    }
    return preprocess(config_from_dict(cfg))


def _cache(folder) -> dict:
    return {"_target_": "automodel.data.diffusion.LatentCacheDataset", "path": str(folder)}


@pytest.fixture(scope="module")
def caches(tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    return _preprocess(out, "train"), _preprocess(out, "validation")


@pytest.mark.parametrize("posterior", ["mean", "sample"])
def test_training_from_the_cache_gives_the_on_the_fly_losses_without_the_encoders(tmp_path, caches, posterior):
    train, validation = caches
    objective = {"timestep_sampling": "logit_normal", "posterior": posterior}
    common = {"step_scheduler": STEPS, "validation": {"batch_size": 24}, "flow_matching": objective}
    run(t2i_config(tmp_path / "images", **common))
    recipe = run(t2i_config(tmp_path / "cache", dataset=_cache(train), validation_dataset=_cache(validation), **common))
    assert [
        getattr(recipe.trainable.pipeline, name, None)
        for name in ("vae", "text_encoder", "text_encoder_2", "text_encoder_3")
    ] == [None] * 4
    assert losses(tmp_path / "cache") == pytest.approx(losses(tmp_path / "images"), abs=1e-5)
    encoded, cached = (read_jsonl(tmp_path / run_dir / "validation.jsonl") for run_dir in ("images", "cache"))
    assert [r["step"] for r in cached] == [r["step"] for r in encoded] == [0, 4]
    assert [r["val_loss"] for r in cached] == pytest.approx([r["val_loss"] for r in encoded], abs=1e-5)


def test_a_cache_encoded_with_another_prompt_length_is_an_error_naming_the_dataset(tmp_path, caches):
    other = _preprocess(tmp_path, "validation", max_sequence_length=6)
    cfg = t2i_config(tmp_path / "out", dataset=_cache(other), validation_dataset=_cache(caches[1]))
    with pytest.raises(ConfigError, match="dataset") as error:
        run(cfg)
    assert "max_sequence_length" in str(error.value)


def test_posterior_samples_train_differently_from_the_means(tmp_path, caches):
    train, validation = caches
    for posterior in ("mean", "sample"):
        objective = {"timestep_sampling": "logit_normal", "posterior": posterior}
        data = {"dataset": _cache(train), "validation_dataset": _cache(validation)}
        run(t2i_config(tmp_path / posterior, step_scheduler=STEPS, flow_matching=objective, validation=None, **data))
    means, samples = losses(tmp_path / "mean"), losses(tmp_path / "sample")
    assert means.keys() == samples.keys() and all(abs(means[s] - samples[s]) > 1e-4 for s in means)


def test_posterior_sampling_from_a_cache_of_means_only_is_an_error_naming_flow_matching(tmp_path, caches):
    old = tmp_path / "means_only"
    shutil.copytree(caches[1], old)
    index = json.loads((old / "index.json").read_text())
    index["keys"].remove("latents_std")  # as a cache written before the standard deviations were stored
    (old / "index.json").write_text(json.dumps(index))
    objective = {"timestep_sampling": "logit_normal", "posterior": "sample"}
    cfg = t2i_config(tmp_path / "out", dataset=_cache(old), validation_dataset=None, flow_matching=objective)
    with pytest.raises(ConfigError, match="flow_matching") as error:
        run(cfg)
    assert "re-run `automodel preprocess diffusion`" in str(error.value)
