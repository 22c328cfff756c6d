"""Rank function for test_distributed: run train.diffusion on each rank of a gloo process group."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from diffusion_recipe_helpers import losses, t2i_config

from automodel.recipes.diffusion.train import TrainRecipeForDiffusion


def run_training(out: str, sections: dict[str, Any]) -> dict[str, Any]:
    """Run train.diffusion with ``sections`` replacing those of the test config; return layout and losses."""
    recipe = TrainRecipeForDiffusion(t2i_config(Path(out), **sections))
    recipe.setup()
    recipe.run_train_validation_loop()
    log = Path(out) / "training.jsonl"
    return {
        "dp_size": recipe.parallel.dp_size,
        "wrapper": type(recipe.denoiser).__name__,
        "losses": losses(Path(out)) if log.exists() else None,
    }
