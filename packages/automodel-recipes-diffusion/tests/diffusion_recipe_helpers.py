"""Configs of train.diffusion over the shipped tiny SD3 pipeline and coloured-shapes images, and running them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from automodel.config import ConfigNode, config_from_dict

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "examples" / "data" / "t2i_shapes"
PIPELINE = ROOT / "examples" / "data" / "tiny_t2i" / "pipeline"
DENOISER = {"num_layers": 2, "attention_head_dim": 16, "num_attention_heads": 2, "caption_projection_dim": 32}


def images(split: str) -> dict[str, Any]:
    """The ``dataset:`` section of the shipped ``split`` (train or validation) images."""
    return {
        "_target_": "automodel.data.diffusion.ImageCaptionDataset",
        "path_or_dataset_id": str(DATA / split),
        "resolution": 32,
    }


def t2i_config(out: Path, **sections: Any) -> ConfigNode:
    """A train.diffusion config writing to ``out``; keyword arguments replace whole sections (None drops one)."""
    data = {
        "recipe": "train.diffusion",
        "seed": 7,
        "model": {
            "_target_": "automodel.models.AutoDiffusionPipeline.from_config",
            "components_from": str(PIPELINE),
            "denoiser_config": DENOISER,
            "seed": 7,
        },
        "dataset": images("train"),
        "validation_dataset": images("validation"),
        "prompts": {"max_sequence_length": 8},
        "flow_matching": {"timestep_sampling": "logit_normal"},
        "ema": {"decay": 0.9},
        "parallel_scheme": "fsdp2",
        "step_scheduler": {"global_batch_size": 16, "local_batch_size": 8, "max_steps": 6, "log_interval": 1},
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": 1e-3, "weight_decay": 0.0},
        "clip_grad_norm": {"max_norm": 1.0},
        "validation": {"batch_size": 24, "num_prompts": 3, "num_inference_steps": 3},
        "logging": {"progress_bar": False},
        "checkpoint": {"dir": str(out)},
    }
    data.update(sections)
    return config_from_dict({k: v for k, v in data.items() if v is not None})


def run(cfg: ConfigNode) -> Any:
    """Set up and run train.diffusion on ``cfg``; return the recipe."""
    from automodel.recipes.diffusion.train import TrainRecipeForDiffusion

    recipe = TrainRecipeForDiffusion(cfg)
    recipe.setup()
    recipe.run_train_validation_loop()
    return recipe


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def losses(out: Path) -> dict[int, float]:
    """The per-step training losses a run logged, by step."""
    return {r["step"]: r["loss"] for r in read_jsonl(out / "training.jsonl")}
