"""A tiny teacher trained with train_ft, kd configs distilling it into a smaller student, and a rank function."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from recipe_test_helpers import read_jsonl, run_recipe, sft_config

from automodel.config import ConfigNode, config_from_dict
from automodel.recipes.llm.kd import KnowledgeDistillationRecipeForNextTokenPrediction

STUDENT = {
    "model_type": "llama",
    "vocab_size": 320,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
    "tie_word_embeddings": True,
}


def train_teacher(task: Path, out: Path) -> Path:
    """Train train_ft's test model on the task for 60 steps (no validation); return its saved model folder."""
    schedule = {"global_batch_size": 16, "local_batch_size": 16, "max_steps": 60, "log_interval": 20}
    optimizer = {"_target_": "torch.optim.AdamW", "lr": 5e-3, "weight_decay": 0.0}
    run_recipe(sft_config(task, out, step_scheduler=schedule, optimizer=optimizer, validation_dataset=None))
    return out / "step_000060" / "model"


def kd_config(task: Path, out: Path, teacher: Path, **sections: Any) -> ConfigNode:
    """A kd config distilling ``teacher`` into a smaller student on the task for 100 steps, with the default
    kd_ratio and KD loss; keyword arguments replace whole sections."""
    base = sft_config(task, out).to_container(resolve=False)
    data = {
        **base,
        "model": {"_target_": "automodel.models.AutoModelForCausalLM.from_config", "config": STUDENT},
        "teacher_model": {
            "_target_": "automodel.models.AutoModelForCausalLM.from_pretrained",
            "pretrained_model_name_or_path": str(teacher),
        },
        "step_scheduler": {"global_batch_size": 16, "local_batch_size": 16, "max_steps": 100, "log_interval": 20},
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": 1e-2, "weight_decay": 0.0},
        "checkpoint": {"dir": str(out), "enabled": False},
        **sections,
    }
    return config_from_dict({k: v for k, v in data.items() if v is not None})


def run_kd(task: str, out: str, teacher: str, sections: dict[str, Any]) -> dict[str, Any]:
    """Run kd with ``sections`` replacing those of ``kd_config``; return rank, wrappers and the logged records."""
    recipe = KnowledgeDistillationRecipeForNextTokenPrediction(
        kd_config(Path(task), Path(out), Path(teacher), **sections)
    )
    recipe.setup()
    recipe.run_train_validation_loop()
    logs = {name: Path(out) / f"{name}.jsonl" for name in ("training", "validation")}
    return {
        "rank": recipe.parallel.env.rank,
        "student": type(recipe.model).__name__,
        "teacher": type(recipe.distillation.teacher).__name__,
        **{name: read_jsonl(path) if path.exists() else [] for name, path in logs.items()},
    }


def setup_error(task: str, out: str, teacher: str, sections: dict[str, Any]) -> str:
    """Set up kd with ``sections`` and return the message of the error it raises ('' when none)."""
    recipe = KnowledgeDistillationRecipeForNextTokenPrediction(
        kd_config(Path(task), Path(out), Path(teacher), **sections)
    )
    try:
        recipe.setup()
    except Exception as exc:
        return str(exc)
    return ""
