"""train.diffusion with `peft:`: the LoRA file carries its adapter metadata (alpha included), and a fresh
diffusers pipeline with `load_lora_weights` draws the same images as the recipe's adapted model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from diffusers import DiffusionPipeline
from diffusion_recipe_helpers import run, t2i_config
from safetensors import safe_open

from automodel.models import sample_images

STEPS = 5
LORA = {"_target_": "automodel.peft.LoRAConfig", "dim": 4, "alpha": 16}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("lora")
    steps = {
        "global_batch_size": 16,
        "local_batch_size": 8,
        "max_steps": STEPS,
        "log_interval": 1,
        "val_check_interval": STEPS,
    }
    cfg = t2i_config(
        out, step_scheduler=steps, peft=LORA, optimizer={"_target_": "torch.optim.AdamW", "lr": 1e-2}, ema=None
    )
    return run(cfg), out


def test_the_lora_file_carries_rank_alpha_and_modules_in_its_header(trained):
    _, out = trained
    with safe_open(out / f"step_{STEPS:06d}" / "model" / "pytorch_lora_weights.safetensors", "pt") as handle:
        metadata = json.loads(handle.metadata()["lora_adapter_metadata"])
        keys = list(handle.keys())
    assert metadata["transformer.r"] == 4 and metadata["transformer.lora_alpha"] == 16
    assert keys and all(key.startswith("transformer.") for key in keys)
    assert any(name.endswith("attn.to_q") for name in metadata["transformer.target_modules"])


def test_load_lora_weights_in_a_fresh_pipeline_draws_the_recipes_images(trained):
    recipe, out = trained
    prompts = ["a red circle", "a blue square"]
    settings = {"num_inference_steps": 3, "guidance_scale": 1.0, "height": 32, "width": 32, "max_sequence_length": 8}
    ours = sample_images(recipe.trainable.pipeline, prompts, seed=3, output_type="np", **settings)
    base = DiffusionPipeline.from_pretrained(recipe.base_pipeline)
    generators = [torch.Generator().manual_seed(3 + i) for i in range(len(prompts))]
    before = base(prompts, generator=generators, output_type="np", **settings).images
    base.load_lora_weights(out / f"step_{STEPS:06d}" / "model")
    generators = [torch.Generator().manual_seed(3 + i) for i in range(len(prompts))]
    after = base(prompts, generator=generators, output_type="np", **settings).images
    np.testing.assert_allclose(after, ours, atol=1e-4)
    assert np.abs(before - ours).max() > 1e-2
