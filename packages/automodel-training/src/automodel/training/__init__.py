"""automodel.training: step scheduling, the training step, losses, LR schedules, metrics and validation.

Retrieval training: InfoNCELoss (bi-encoder, in-batch, hard and cross-device negatives),
RerankBCELoss and ListwiseSoftmaxLoss (cross-encoders), cached_contrastive_backward (gradient
cache), exact_top_k (streaming exact search), retrieval_metrics and rerank_metrics.
"""

from automodel.training.contrastive_loss import InfoNCELoss
from automodel.training.errors import TrainingError
from automodel.training.finetune_loop import FinetuneLoop
from automodel.training.grad_cache import cached_contrastive_backward
from automodel.training.loss import (
    IGNORE_INDEX,
    ChunkedCrossEntropy,
    CutCrossEntropy,
    KDLoss,
    MaskedCrossEntropy,
    forward_loss,
    logits_of,
    model_inputs,
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
from automodel.training.plots import LOSS_CURVES, plot_runs, read_run, runs_figure
from automodel.training.progress import ProgressReporter
from automodel.training.recipe import (
    BaseRecipe,
    is_stateful,
    main_reporting_user_errors,
    run_recipe,
    show_component_logs,
)
from automodel.training.rerank_loss import ListwiseSoftmaxLoss, RerankBCELoss
from automodel.training.retrieval_metrics import rerank_metrics, retrieval_metrics
from automodel.training.retrieval_search import exact_top_k
from automodel.training.retrieval_step import contrastive_train_step, count_queries, rerank_train_step
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
from automodel.training.trackers import MISPLACED_TRACKERS, TRACKERS, Trackers, build_trackers
from automodel.training.validation import generation_exact_match, image_text_exact_match, validation_loss

__version__ = "0.7.1"

__all__ = [
    "IGNORE_INDEX",
    "LOSS_CURVES",
    "METRIC_FILES",
    "MISPLACED_TRACKERS",
    "TRACKERS",
    "BaseRecipe",
    "ChunkedCrossEntropy",
    "CutCrossEntropy",
    "FinetuneLoop",
    "InfoNCELoss",
    "JsonlWriter",
    "KDLoss",
    "ListwiseSoftmaxLoss",
    "MaskedCrossEntropy",
    "MetricsSample",
    "ProgressReporter",
    "RerankBCELoss",
    "StepResult",
    "StepScheduler",
    "Trackers",
    "TrainingError",
    "build_trackers",
    "cached_contrastive_backward",
    "clip_grad_norm",
    "constant",
    "contrastive_train_step",
    "count_label_tokens",
    "count_queries",
    "count_real_tokens",
    "derive_grad_accumulation",
    "exact_top_k",
    "forward_loss",
    "generation_exact_match",
    "image_text_exact_match",
    "is_stateful",
    "logits_of",
    "main_reporting_user_errors",
    "measure_peak_tflops",
    "model_flops_utilization",
    "model_inputs",
    "peak_memory_gib",
    "plot_runs",
    "read_run",
    "rerank_metrics",
    "rerank_train_step",
    "retrieval_metrics",
    "run_recipe",
    "runs_figure",
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
