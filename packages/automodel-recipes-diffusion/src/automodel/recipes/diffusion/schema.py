"""The diffusion recipes' configs in one strict schema each: every section, every plain key and its kind.

``automodel.config.check_config`` applies them first in ``setup()``, before anything is built.
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

PARALLEL_SCHEMES = ("ddp", "fsdp2")

FLOW_MATCHING = {
    "timestep_sampling": text(("uniform", "logit_normal", "mode", "sigmoid"), default="logit_normal"),
    "logit_mean": number(default=0.0),
    "logit_std": number(0, default=1.0),
    "mode_scale": number(default=1.29),
    "sigmoid_scale": number(0, default=1.0),
    "flow_shift": number(0),
    "resolution_shift": anything("a mapping of base_shift, max_shift, base_seq_len, max_seq_len"),
    "weighting": text(("none", "sigma_sqrt", "cosmap"), default="none"),
    "caption_dropout": number(0, default=0.0),
    "posterior": text(("mean", "sample"), default="mean"),
}

TRAIN = {
    "recipe": text(),
    "slurm": OWNED,
    "k8s": OWNED,
    "seed": integer(0, "the random seed", default=42),
    "model": BUILT,
    "dataset": BUILT,
    "validation_dataset": BUILT,
    "dataloader": {"shuffle": boolean(default=True), "num_workers": integer(0, "data-loading processes", default=0)},
    "prompts": {"max_sequence_length": integer(1, default=256)},
    "flow_matching": FLOW_MATCHING,
    "ema": {
        "decay": number(0, default=0.9999),
        "update_after_step": integer(0, "steps", default=0),
        "warmup": boolean(default=False),
    },
    "peft": BUILT,
    "compile": OWNED,
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
        "timesteps": anything("a list of sigmas in (0, 1)"),
        "prompts": anything("a list of prompts"),
        "num_prompts": integer(0, "prompts", default=0),
        "num_inference_steps": integer(1, default=20),
        "guidance_scale": number(0, default=1.0),
        "height": integer(8),
        "width": integer(8),
    },
    "logging": LOGGING,
    "parallel_scheme": text(PARALLEL_SCHEMES, default="fsdp2"),
    "distributed": OWNED,
}
TRAIN_REQUIRED = ("model", "dataset", "optimizer", "step_scheduler")

PREPROCESS = {
    "recipe": text(),
    "slurm": OWNED,
    "k8s": OWNED,
    "seed": integer(0, "the random seed", default=42),
    "model": BUILT,
    "dataset": BUILT,
    "prompts": {"max_sequence_length": integer(1, default=256)},
    "latent_cache": {
        "dir": text(describe="the cache folder", default="latent_cache"),
        "batch_size": integer(1, default=16),
        "samples_per_shard": integer(1, default=1024),
    },
    "distributed": OWNED,
}
PREPROCESS_REQUIRED = ("model", "dataset", "latent_cache")
