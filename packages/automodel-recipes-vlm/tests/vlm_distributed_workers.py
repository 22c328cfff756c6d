"""Rank function for test_distributed: run finetune.vlm on each rank of a gloo process group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlm_recipe_helpers import read_jsonl, vlm_config

from automodel.recipes.vlm.finetune import FinetuneRecipeForVLM


def run_finetune(out: str, sections: dict[str, Any]) -> dict[str, Any]:
    """Run finetune.vlm with ``sections`` replacing those of the test config; return layout and losses."""
    recipe = FinetuneRecipeForVLM(vlm_config(Path(out), **sections))
    recipe.setup()
    recipe.run_train_validation_loop()
    log = Path(out) / "training.jsonl"
    return {
        "dp_size": recipe.parallel.dp_size,
        "wrapper": type(recipe.model).__name__,
        "losses": {r["step"]: r["loss"] for r in read_jsonl(log)} if log.exists() else None,
    }
