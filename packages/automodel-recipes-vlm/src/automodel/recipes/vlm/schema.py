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
    "seed": integer(0, "the random seed", default=42),
    "model": BUILT,
    "processor": BUILT,
    "dataset": BUILT,
    "validation_dataset": BUILT,
    "dataloader": {"shuffle": boolean(default=True), "num_workers": integer(0, "data-loading processes", default=0)},
    "freeze_config": {key: boolean(default=False) for key in FREEZE_KEYS},
    "peft": BUILT,
    "compile": OWNED,
    "loss_fn": BUILT,
    "optimizer": BUILT,
    "lr_scheduler": BUILT,
    "step_scheduler": signature_settings(
        StepScheduler, skip=("dataloader", "dp_size"), minimums=StepScheduler.MINIMUMS
    ),
    "clip_grad_norm": {"max_norm": number(0, default=None)},
    "checkpoint": signature_settings(CheckpointSettings),
    "restore_from": {"path": text(describe="latest, a step folder, or null", default=None)},
    "validation": {
        "batch_size": integer(1),
        "generation": {
            "enabled": boolean(default=True),
            "max_new_tokens": integer(1, default=32),
            "num_samples": integer(1, default=100),
            "batch_size": integer(1, default=16),
        },
    },
    "logging": LOGGING,
    "distributed": OWNED,
}
FINETUNE_REQUIRED = ("model", "dataset", "optimizer", "step_scheduler")
