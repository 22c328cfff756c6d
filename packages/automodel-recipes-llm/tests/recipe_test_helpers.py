"""A tiny offline task (spell numbers in words) and train_ft configs for it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from automodel.config import ConfigNode, config_from_dict
from automodel.models import build_tokenizer

ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
]
TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def words(n: int) -> str:
    """0..99 in words."""
    return ONES[n] if n < 20 else TENS[n // 10] + (f"-{ONES[n % 10]}" if n % 10 else "")


def write_task(root: Path) -> Path:
    """Write the task files and a tokenizer under ``root``; return ``root``."""
    numbers = list(range(100))
    random.Random(0).shuffle(numbers)
    rows = {"validation": numbers[:16], "train": numbers[16:]}
    for split, subset in rows.items():
        lines = [json.dumps({"question": f"Write {n} in words.", "answer": words(n)}) for n in subset]
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    corpus = [json.dumps({"text": ", ".join(words(n) for n in range(s, min(100, s + 8)))}) for s in range(0, 92)]
    (root / "corpus.jsonl").write_text("\n".join(corpus) + "\n")
    texts = [
        json.loads(line)["question"] + " " + json.loads(line)["answer"]
        for line in (root / "train.jsonl").read_text().splitlines()
    ]
    build_tokenizer(texts + [json.loads(c)["text"] for c in corpus], root / "tokenizer", vocab_size=300)
    return root


def sft_config(task: Path, out: Path, **sections: Any) -> ConfigNode:
    """A train_ft config for the task writing to ``out``; keyword arguments replace whole sections."""
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
        "tokenizer": {
            "_target_": "automodel.models.load_tokenizer",
            "pretrained_model_name_or_path": str(task / "tokenizer"),
            "hf_token": "s3cr3t-value",
        },
        "dataset": _instruction(task / "train.jsonl"),
        "validation_dataset": _instruction(task / "validation.jsonl"),
        "step_scheduler": {
            "global_batch_size": 16,
            "local_batch_size": 8,
            "max_steps": 40,
            "val_check_interval": 20,
            "log_interval": 5,
        },
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": 3e-3, "weight_decay": 0.0},
        "lr_scheduler": {"_target_": "automodel.training.warmup_cosine", "warmup_steps": 1},
        "clip_grad_norm": {"max_norm": 1.0},
        "logging": {"progress_bar": False},
        "checkpoint": {"dir": str(out)},
    }
    data.update(sections)
    return config_from_dict({k: v for k, v in data.items() if v is not None})


def _instruction(path: Path) -> dict:
    return {
        "_target_": "automodel.data.llm.ColumnMappedTextInstructionDataset",
        "path_or_dataset_id": str(path),
        "column_mapping": {"question": "question", "answer": "answer"},
        "seq_length": 48,
    }


def run_recipe(cfg: ConfigNode) -> Any:
    """Set up and run train_ft on ``cfg``; return the recipe."""
    from automodel.recipes.llm.train_ft import TrainFinetuneRecipeForNextTokenPrediction

    recipe = TrainFinetuneRecipeForNextTokenPrediction(cfg)
    recipe.setup()
    recipe.run_train_validation_loop()
    return recipe


def read_jsonl(path: Path) -> list[dict]:
    """Return the JSON objects of a JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines()]
