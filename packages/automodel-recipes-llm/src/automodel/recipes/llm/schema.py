"""The LLM recipes' configs, in one strict schema each: every section, every plain key and its kind.

``automodel.config.check_config`` applies them before anything is built (``train_ft``,
``kd`` and ``benchmark`` call it first in ``setup()``), and a test checks every example
config against them.
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

STEP_SCHEDULER = signature_settings(StepScheduler, skip=("dataloader", "dp_size"), minimums=StepScheduler.MINIMUMS)
GENERATION = {
    "enabled": boolean(default=True),
    "max_new_tokens": integer(1, default=32),
    "num_samples": integer(1, default=100),
    "batch_size": integer(1, default=32),
}

TRAIN_FT = {
    "recipe": text(),
    "slurm": OWNED,
    "k8s": OWNED,
    "seed": integer(0, "the random seed", default=42),
    "model": BUILT,
    "tokenizer": BUILT,
    "dataset": BUILT,
    "validation_dataset": BUILT,
    "dataloader": {
        "shuffle": boolean(default=True),
        "num_workers": integer(0, "data-loading processes", default=0),
        "pad_to_multiple_of": integer(1, default=None),
    },
    "packed_sequence": {
        "enabled": boolean(default=False),
        "packed_sequence_size": integer(1, "tokens per packed sample", default=2048),
    },
    "compile": OWNED,
    "loss_fn": BUILT,
    "optimizer": BUILT,
    "lr_scheduler": BUILT,
    "step_scheduler": STEP_SCHEDULER,
    "clip_grad_norm": {"max_norm": number(0, default=None)},
    "checkpoint": signature_settings(CheckpointSettings),
    "restore_from": {"path": text(describe="latest, a step folder, or null", default=None)},
    "peft": BUILT,
    "quantization": BUILT,
    "validation": {"batch_size": integer(1), "generation": GENERATION},
    "logging": LOGGING,
    "distributed": OWNED,
}
TRAIN_FT_REQUIRED = ("model", "dataset", "optimizer", "step_scheduler")

KD = {
    **TRAIN_FT,
    "teacher_model": BUILT,
    "kd_ratio": number(0, "the weight of the KD term, 0 to 1", default=0.5),
    "kd_loss_fn": BUILT,
}
KD_REQUIRED = (*TRAIN_FT_REQUIRED, "teacher_model")

BENCHMARK = {
    **{key: TRAIN_FT[key] for key in ("recipe", "slurm", "k8s", "seed", "model", "dataset", "loss_fn", "compile")},
    **{key: TRAIN_FT[key] for key in ("optimizer", "lr_scheduler", "clip_grad_norm", "checkpoint", "peft")},
    "step_scheduler": OWNED,
    "distributed": OWNED,
    "benchmark": OWNED,
}
BENCHMARK_REQUIRED = ("model", "optimizer", "step_scheduler")

GENERATE = {
    **KD,
    "prompt": anything("a prompt or a list of prompts"),
    "prompt_format": text(("auto", "raw", "instruction", "chat"), default="auto"),
    "max_new_tokens": integer(1, default=32),
    "step": anything("latest, a step number or a step folder", default="latest"),
}
GENERATE_REQUIRED = ("prompt",)
