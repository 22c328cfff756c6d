"""automodel.training: step scheduling, the training step, losses, LR schedules, metrics and validation."""

from automodel.training.errors import TrainingError
from automodel.training.finetune_loop import FinetuneLoop
from automodel.training.loss import (
    IGNORE_INDEX,
    ChunkedCrossEntropy,
    CutCrossEntropy,
    KDLoss,
    MaskedCrossEntropy,
    forward_loss,
)
from automodel.training.lr_schedules import constant, warmup_cosine, warmup_linear, wsd
from automodel.training.metrics import (
    METRIC_FILES,
    JsonlWriter,
    MetricsSample,
    measure_peak_tflops,
    model_flops_utilization,
    peak_memory_gib,
    truncate_history,
)
from automodel.training.progress import ProgressReporter
from automodel.training.recipe import (
    BaseRecipe,
    is_stateful,
    main_reporting_user_errors,
    run_recipe,
    show_component_logs,
)
from automodel.training.seed import set_seed
from automodel.training.step import (
    StepResult,
    clip_grad_norm,
    count_label_tokens,
    count_real_tokens,
    to_device,
    train_step,
)
from automodel.training.step_scheduler import StepScheduler, derive_grad_accumulation
from automodel.training.validation import generation_exact_match, image_text_exact_match, validation_loss

__version__ = "0.4.0"

__all__ = [
    "IGNORE_INDEX",
    "METRIC_FILES",
    "BaseRecipe",
    "ChunkedCrossEntropy",
    "CutCrossEntropy",
    "FinetuneLoop",
    "JsonlWriter",
    "KDLoss",
    "MaskedCrossEntropy",
    "MetricsSample",
    "ProgressReporter",
    "StepResult",
    "StepScheduler",
    "TrainingError",
    "clip_grad_norm",
    "constant",
    "count_label_tokens",
    "count_real_tokens",
    "derive_grad_accumulation",
    "forward_loss",
    "generation_exact_match",
    "image_text_exact_match",
    "is_stateful",
    "main_reporting_user_errors",
    "measure_peak_tflops",
    "model_flops_utilization",
    "peak_memory_gib",
    "run_recipe",
    "set_seed",
    "show_component_logs",
    "to_device",
    "train_step",
    "truncate_history",
    "validation_loss",
    "warmup_cosine",
    "warmup_linear",
    "wsd",
]
