"""examples/diffusion/tiny_t2i.yaml and tiny_t2i_lora.yaml through the CLI: the sampled images show the
colour and the shape their held-out captions name (the example's own check), diffusers loads the saved
pipeline and draws the same images, and the LoRA run's file loads with `load_lora_weights` and draws the
images of the adapted model."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_fork import run_cli
from diffusers import DiffusionPipeline
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples" / "data"))

from t2i_shapes_check import score_samples  # noqa: E402

STEPS = 1000
LORA_STEPS = 100


def _diffusers_images(pipe, samples: Path) -> np.ndarray:
    """The images diffusers draws with the prompts, seeds and arguments the run recorded for ``samples``."""
    record = json.loads((samples / "prompts.json").read_text())
    prompts, seed = record.pop("prompts"), record.pop("seed")
    generators = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    return pipe(prompts, generator=generators, output_type="np", **record).images


def _written(samples: Path) -> np.ndarray:
    count = len(json.loads((samples / "prompts.json").read_text())["prompts"])
    return np.stack([np.asarray(Image.open(samples / f"{i:03d}.png")) for i in range(count)]).astype(np.float64) / 255


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_t2i")
    argv = ["train", "diffusion", "-c", "examples/diffusion/tiny_t2i.yaml", "--checkpoint.dir", str(out)]
    result = run_cli([*argv, "--+logging.progress_bar=false"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    return out


def test_the_samples_show_the_captions_colour_and_shape(base_run):
    untrained = score_samples(base_run / "samples" / "step_000000")
    trained = score_samples(base_run / "samples" / f"step_{STEPS:06d}")
    assert trained["colour_accuracy"] >= 0.9 and trained["shape_accuracy"] >= 0.8, trained
    assert untrained["colour_accuracy"] < 0.5 and untrained["shape_accuracy"] < 0.6, untrained
    records = [json.loads(line) for line in (base_run / "validation.jsonl").read_text().splitlines()]
    assert records[-1]["val_loss"] < 0.5 * records[0]["val_loss"]


def test_diffusers_loads_the_pipeline_and_draws_the_same_images(base_run):
    pipe = DiffusionPipeline.from_pretrained(base_run / f"step_{STEPS:06d}" / "model")
    samples = base_run / "samples" / f"step_{STEPS:06d}"
    assert np.abs(_diffusers_images(pipe, samples) - _written(samples)).max() <= 1 / 255 + 1e-6


def test_the_lora_example_loads_with_load_lora_weights_and_draws_the_adapted_images(base_run, tmp_path):
    base = base_run / f"step_{STEPS:06d}" / "model"
    argv = ["train", "diffusion", "-c", "examples/diffusion/tiny_t2i_lora.yaml", "--checkpoint.dir", str(tmp_path)]
    overrides = ["--model.pretrained_model_name_or_path", str(base), "--step_scheduler.max_steps", str(LORA_STEPS)]
    overrides += ["--step_scheduler.val_check_interval", str(LORA_STEPS), "--validation.num_prompts", "8"]
    result = run_cli([*argv, *overrides, "--+logging.progress_bar=false"], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    pipe = DiffusionPipeline.from_pretrained(base)
    samples = tmp_path / "samples" / f"step_{LORA_STEPS:06d}"
    before = _diffusers_images(pipe, samples)
    pipe.load_lora_weights(tmp_path / f"step_{LORA_STEPS:06d}" / "model")
    after = _diffusers_images(pipe, samples)
    assert np.abs(after - _written(samples)).max() <= 1 / 255 + 1e-6
    assert np.abs(before - _written(samples)).max() > 4 / 255
    assert score_samples(samples)["colour_accuracy"] >= 0.9
