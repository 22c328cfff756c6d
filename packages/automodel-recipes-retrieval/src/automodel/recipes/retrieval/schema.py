"""The retrieval recipes' configs in one strict schema each: every section, every plain key and its kind.

``automodel.config.check_config`` applies them first, before anything is built.
"""

from __future__ import annotations

from automodel.checkpoint import CheckpointSettings
from automodel.config import BUILT, OWNED, anything, boolean, integer, number, signature_settings, text
from automodel.training import TRACKERS, StepScheduler

LOGGING = {
    "peak_tflops": number(0),
    "progress_bar": boolean(),
    **{
        name: signature_settings(tracker, **{key: text(values) for key, values in tracker.choices.items()})
        for name, tracker in TRACKERS.items()
    },
}
"""The ``logging:`` section: the peak TFLOP/s for MFU, the progress bar and the experiment trackers."""

FINETUNE = {
    "recipe": text(),
    "slurm": OWNED,
    "k8s": OWNED,
    "seed": integer(0, "the random seed", default=42),
    "model": BUILT,
    "tokenizer": BUILT,
    "dataset": BUILT,
    "validation_dataset": BUILT,
    "collate": {
        "query_max_length": integer(1, "tokens of a query", default=64),
        "passage_max_length": integer(1, "tokens of a passage"),
        "max_length": integer(1, "tokens of a (query, passage) pair for a cross-encoder", default=256),
        "pad_to_multiple_of": integer(1, default=None),
    },
    "dataloader": {"shuffle": boolean(default=True), "num_workers": integer(0, "data-loading processes", default=0)},
    "peft": BUILT,
    "loss_fn": BUILT,
    "gradient_cache": {"chunk_size": integer(1, "rows embedded at once", default=None)},
    "optimizer": BUILT,
    "lr_scheduler": BUILT,
    "step_scheduler": signature_settings(
        StepScheduler, skip=("dataloader", "dp_size"), minimums=StepScheduler.MINIMUMS
    ),
    "clip_grad_norm": {"max_norm": number(0, default=None)},
    "checkpoint": signature_settings(CheckpointSettings),
    "restore_from": {"path": text(describe="latest, a step folder, or null", default=None)},
    "validation": {"batch_size": integer(1), "k_values": anything("a list of cut-offs", default=(1, 10, 100))},
    "logging": LOGGING,
    "distributed": OWNED,
}
FINETUNE_REQUIRED = ("model", "dataset", "optimizer", "step_scheduler")

MINE = {
    "recipe": text(),
    "slurm": OWNED,
    "k8s": OWNED,
    "seed": integer(0, "the random seed", default=42),
    "model": BUILT,
    "tokenizer": BUILT,
    "cross_encoder": BUILT,
    "mining": {
        "input": text(describe="the training file of (query, positive) rows"),
        "query_column": text(),
        "positive_column": text(),
        "corpus": text(describe="a corpus file (_id, title, text); default: the input's positives"),
        "output": text(describe="the JSONL file to write"),
        "range_min": integer(0, default=0),
        "range_max": integer(1),
        "num_negatives": integer(1, default=3),
        "sampling_strategy": text(("top", "random"), default="top"),
        "max_score": number(default=None),
        "min_score": number(default=None),
        "absolute_margin": number(),
        "relative_margin": number(default=None),
        "margin": number(describe="upstream's margin: the same as absolute_margin", default=None),
        "batch_size": integer(1, default=64),
        "query_max_length": integer(1),
        "passage_max_length": integer(1),
        "chunk_rows": integer(1, "passages embedded and searched at a time", default=16384),
        "use_faiss": boolean(default=False),
        "overwrite": boolean(default=False),
    },
    "distributed": OWNED,
}
MINE_REQUIRED = ("model", "mining")
