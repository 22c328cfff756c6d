"""Rank functions for test_distributed_recipe: run train_ft on each rank of a gloo process group."""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

from recipe_test_helpers import read_jsonl, sft_config

from automodel.recipes.llm.train_ft import TrainFinetuneRecipeForNextTokenPrediction


def run_train_ft(task: str, out: str, sections: dict[str, Any]) -> dict[str, Any]:
    """Run train_ft with ``sections`` replacing those of the test config; return rank, layout and losses."""
    recipe = TrainFinetuneRecipeForNextTokenPrediction(sft_config(Path(task), Path(out), **sections))
    recipe.setup()
    recipe.run_train_validation_loop()
    log = Path(out) / "training.jsonl"
    return {
        "rank": recipe.parallel.env.rank,
        "dp_size": recipe.parallel.dp_size,
        "wrapper": type(recipe.model).__name__,
        "sharded_before_loading": recipe.load_report is not None,
        "losses": {r["step"]: r["loss"] for r in read_jsonl(log)} if log.exists() else None,
    }


def run_train_ft_signalling_rank1(task: str, out: str, sections: dict[str, Any]) -> dict[str, Any]:
    """Run train_ft; one second into training, rank 1 alone receives SIGUSR1. Return the step each rank stopped at."""
    recipe = TrainFinetuneRecipeForNextTokenPrediction(sft_config(Path(task), Path(out), **sections))
    recipe.setup()
    if recipe.parallel.env.rank == 1:
        threading.Timer(1.0, os.kill, args=(os.getpid(), signal.SIGUSR1)).start()
    recipe.run_train_validation_loop()
    return {"rank": recipe.parallel.env.rank, "step": recipe.step_scheduler.step}
