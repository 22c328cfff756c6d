"""Rank function for test_distributed: run finetune.retrieval on each rank of a gloo process group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from retrieval_recipe_helpers import bi_encoder_config, read_jsonl

from automodel.recipes.retrieval.finetune import FinetuneRecipeForRetrieval


def run_finetune(out: str, sections: dict[str, Any]) -> dict[str, Any]:
    """Run the bi-encoder config with ``sections`` replacing its own; return layout, losses and validation."""
    recipe = FinetuneRecipeForRetrieval(bi_encoder_config(Path(out), **sections))
    recipe.setup()
    recipe.run_train_validation_loop()
    log, validation = Path(out) / "training.jsonl", Path(out) / "validation.jsonl"
    return {
        "dp_size": recipe.parallel.dp_size,
        "wrapper": type(recipe.model).__name__,
        "losses": {r["step"]: r["loss"] for r in read_jsonl(log)} if log.exists() else None,
        "validation": read_jsonl(validation) if validation.exists() else None,
    }
