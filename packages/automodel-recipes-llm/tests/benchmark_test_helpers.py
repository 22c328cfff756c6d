"""Configs for the benchmark recipe's tests, and the function each rank runs in its two-process test."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automodel.config import ConfigNode, config_from_dict
from automodel.recipes.llm.benchmark import BenchmarkRecipeForNextTokenPrediction


def benchmark_config(out: Path, **sections: Any) -> ConfigNode:
    """A benchmark config of a tiny Llama on mock data writing to ``out``; keyword arguments replace whole sections."""
    data = {
        "seed": 7,
        "model": {
            "_target_": "automodel.models.AutoModelForCausalLM.from_config",
            "config": {
                "model_type": "llama",
                "vocab_size": 320,
                "hidden_size": 64,
                "intermediate_size": 128,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "num_key_value_heads": 2,
                "max_position_embeddings": 64,
                "tie_word_embeddings": True,
            },
        },
        "benchmark": {"warmup_steps": 1, "steps": 3, "seq_length": 32},
        "step_scheduler": {"global_batch_size": 4, "local_batch_size": 4},
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": 1e-3},
        "checkpoint": {"dir": str(out)},
    }
    data.update(sections)
    return config_from_dict({k: v for k, v in data.items() if v is not None})


def run_benchmark(out: str, sections: dict[str, Any]) -> dict[str, Any]:
    """Set up and run the benchmark with ``sections`` replacing those of the test config; return its results."""
    recipe = BenchmarkRecipeForNextTokenPrediction(benchmark_config(Path(out), **sections))
    recipe.setup()
    return recipe.run_benchmark()
