"""Configs of finetune.vlm over the shipped tiny Llava and coloured-shapes data, and running them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from automodel.config import ConfigNode, config_from_dict

ROOT = Path(__file__).resolve().parents[3]
DATA = ROOT / "examples" / "data" / "vlm_shapes"
TINY_VLM = ROOT / "examples" / "data" / "tiny_vlm"


def vlm_config(out: Path, **sections: Any) -> ConfigNode:
    """A finetune.vlm config writing to ``out``; keyword arguments replace whole sections (None drops one)."""
    data = {
        "seed": 1234,
        "model": {
            "_target_": "automodel.models.AutoModelForImageTextToText.from_pretrained",
            "pretrained_model_name_or_path": str(TINY_VLM),
        },
        "dataset": {
            "_target_": "automodel.data.vlm.ImageTextChatDataset",
            "path_or_dataset_id": str(DATA / "train.jsonl"),
        },
        "validation_dataset": {
            "_target_": "automodel.data.vlm.ImageTextChatDataset",
            "path_or_dataset_id": str(DATA / "validation.jsonl"),
        },
        "step_scheduler": {"global_batch_size": 32, "local_batch_size": 16, "max_steps": 120, "log_interval": 1},
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": 3e-3, "betas": [0.9, 0.98], "weight_decay": 0.0},
        "lr_scheduler": {"_target_": "automodel.training.warmup_cosine", "warmup_steps": 20, "min_lr_ratio": 0.1},
        "clip_grad_norm": {"max_norm": 1.0},
        "validation": {"batch_size": 36, "generation": {"max_new_tokens": 8, "num_samples": 72}},
        "logging": {"progress_bar": False},
        "checkpoint": {"dir": str(out)},
    }
    data.update(sections)
    return config_from_dict({k: v for k, v in data.items() if v is not None})


def run(cfg: ConfigNode) -> Any:
    """Set up and run finetune.vlm on ``cfg``; return the recipe."""
    from automodel.recipes.vlm.finetune import FinetuneRecipeForVLM

    recipe = FinetuneRecipeForVLM(cfg)
    recipe.setup()
    recipe.run_train_validation_loop()
    return recipe


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines()]
