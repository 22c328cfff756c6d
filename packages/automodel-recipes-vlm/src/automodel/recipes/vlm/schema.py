"""The VLM recipe's config in one strict schema: every section, every plain key and its kind.

``automodel.config.check_config`` applies it first in ``setup()``, before anything is built.
"""

from __future__ import annotations

from automodel.checkpoint import CheckpointSettings
from automodel.config import BUILT, OWNED, boolean, integer, number, signature_settings, text
from automodel.recipes.vlm.freezing import FREEZE_KEYS
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
    "seed": integer(0, "the random seed"),
    "model": BUILT,
    "processor": BUILT,
    "dataset": BUILT,
    "validation_dataset": BUILT,
    "dataloader": {"shuffle": boolean(), "num_workers": integer(0, "data-loading processes")},
    "freeze_config": {key: boolean() for key in FREEZE_KEYS},
    "peft": BUILT,
    "compile": OWNED,
    "loss_fn": BUILT,
    "optimizer": BUILT,
    "lr_scheduler": BUILT,
    "step_scheduler": signature_settings(
        StepScheduler, skip=("dataloader", "dp_size"), minimums=StepScheduler.MINIMUMS
    ),
    "clip_grad_norm": {"max_norm": number(0)},
    "checkpoint": signature_settings(CheckpointSettings),
    "restore_from": {"path": text(describe="latest, a step folder, or null")},
    "validation": {
        "batch_size": integer(1),
        "generation": {
            "enabled": boolean(),
            "max_new_tokens": integer(1),
            "num_samples": integer(1),
            "batch_size": integer(1),
        },
    },
    "logging": LOGGING,
    "distributed": OWNED,
}
FINETUNE_REQUIRED = ("model", "dataset", "optimizer", "step_scheduler")
