"""kd: knowledge distillation of a causal LM into another that shares its tokenizer.

    automodel kd llm -c cfg.yaml
    python -m automodel.recipes.llm.kd -c cfg.yaml [--section.key VALUE ...]

train_ft with a frozen teacher. ``teacher_model:`` builds the teacher like ``model:``; it is
never given adapters, stays in eval mode without gradients, and is sharded like the student
under FSDP2 (each rank keeps a whole copy under DDP). Every micro-batch runs the teacher first,
then the student, whose loss is ``(1 - kd_ratio) * CE + kd_ratio * KD``: ``loss_fn:`` (default
MaskedCrossEntropy) against the labels and ``kd_loss_fn:`` (default KDLoss, temperature 1)
against the teacher, both over the label tokens of the whole step. training.jsonl adds the two
parts (``ce_loss``, ``kd_loss``); validation adds ``val_kl``, the student's mean KL to the
teacher per label token at temperature 1, next to the student's own ``val_loss``.
"""

from __future__ import annotations

import contextlib
import math
import sys
from collections.abc import Callable, Iterator
from typing import Any

import torch

from automodel.config import ConfigNode, build_section, check_config, config_error, refuse_moved_sections
from automodel.distributed import Parallelism, apply_fsdp2
from automodel.models import ModelError, defer_weights, load_tokenizer, materialize_model
from automodel.recipes.llm.schema import KD, KD_REQUIRED
from automodel.recipes.llm.train_ft import (
    TrainFinetuneRecipeForNextTokenPrediction,
    build_model,
    run_recipe,
    shards_before_weights,
)
from automodel.training import MISPLACED_TRACKERS, KDLoss, main_reporting_user_errors, validation_loss
from automodel.training.loss import MODEL_INPUTS

# This route's config, as `automodel <command> <domain> --help` lists it (read through the entry point).
SCHEMA, REQUIRED = KD, KD_REQUIRED

SAME_TOKENIZER = "distillation compares the two models' next-token distributions id by id"


def read_kd_ratio(cfg: ConfigNode) -> float:
    """Return ``kd_ratio`` (default 0.5), the weight of the KD term; a ConfigError unless it is in [0, 1]."""
    value = cfg.get("kd_ratio", 0.5)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise config_error(
            cfg,
            f"must be a number from 0 to 1, got {value!r}: the loss is (1 - kd_ratio) * CE + kd_ratio * KD",
            "kd_ratio",
            "0 trains on the labels alone, 1 on the teacher alone",
        )
    return float(value)


def build_kd_loss_fn(cfg: ConfigNode) -> Any:
    """Build ``kd_loss_fn:`` (default: KDLoss at temperature 1), called as ``(student_logits, teacher_logits,
    labels, num_label_tokens)``."""
    if "kd_loss_fn" not in cfg:
        return KDLoss(temperature=1.0)
    return build_section(cfg, "kd_loss_fn")


def _tokenizer_beside(source: str) -> Any:
    """The tokenizer saved with a pretrained model, or None when there is none."""
    try:
        return load_tokenizer(source)
    except ModelError:
        return None


def check_same_tokenizer(cfg: ConfigNode, teacher: torch.nn.Module, student: torch.nn.Module, tokenizer: Any) -> None:
    """Raise a ConfigError naming ``teacher_model`` when the teacher cannot share the student's tokenizer.

    The two ``vocab_size``s must be equal; a teacher loaded from a pretrained path that holds a
    tokenizer must hold one with the student tokenizer's vocabulary.
    """
    hint = "distil from a teacher trained with the student's tokenizer"
    teacher_vocab, student_vocab = teacher.config.vocab_size, student.config.vocab_size
    if teacher_vocab != student_vocab:
        raise config_error(
            cfg,
            f"the teacher's vocab_size is {teacher_vocab} and the student's {student_vocab}; {SAME_TOKENIZER}, "
            "so the teacher must use the student's tokenizer",
            "teacher_model",
            hint,
        )
    source = cfg.teacher_model.get("pretrained_model_name_or_path")
    beside = _tokenizer_beside(str(source)) if source is not None else None
    if beside is not None and beside.get_vocab() != tokenizer.get_vocab():
        raise config_error(
            cfg,
            f"the tokenizer saved with the teacher ({source}) is not the student's: {SAME_TOKENIZER}",
            "teacher_model",
            hint,
        )


def shard_teacher(cfg: ConfigNode, teacher: torch.nn.Module, parallel: Parallelism) -> torch.nn.Module:
    """Return the teacher laid out for the ``distributed:`` strategy: FSDP2-sharded under ``fsdp2``, whole on
    every rank under ``ddp`` (it has no gradients to synchronise), as it is for one process.

    Tensor and context parallelism and ``megatron_fsdp`` are refused with a ConfigError naming ``distributed``.
    """
    if parallel.mesh is None:
        return teacher
    if parallel.sizes.tp > 1 or parallel.sizes.cp > 1:
        raise config_error(
            cfg,
            "kd compares the teacher's and the student's logits over the whole vocabulary and sequence, which "
            "tensor and context parallelism split across processes",
            "distributed",
            "use tp_size: 1 and cp_size: 1 (FSDP2 or DDP over every process)",
        )
    if parallel.config.strategy == "fsdp2":
        return apply_fsdp2(teacher, parallel.mesh, parallel.config)
    if parallel.config.strategy == "ddp":
        return teacher
    raise config_error(
        cfg,
        f"kd cannot shard the teacher with strategy {parallel.config.strategy}",
        "distributed",
        "use strategy: fsdp2 (or ddp)",
    )


def build_teacher(cfg: ConfigNode, parallel: Parallelism, student: torch.nn.Module, tokenizer: Any) -> torch.nn.Module:
    """Build ``teacher_model:`` on this process's device, check it shares the student's tokenizer, freeze it
    (eval mode, no gradients) and lay it out like the student; return it.

    Under FSDP2 on several processes the teacher is built on the meta device and gets its
    weights after sharding: each rank holds and reads only its shards (``materialize_model``).
    """
    with defer_weights(shards_before_weights(parallel, cfg, None, writes_base=False)):
        teacher = build_model(cfg, parallel.device, "teacher_model")
    check_same_tokenizer(cfg, teacher, student, tokenizer)
    teacher.eval()
    teacher.requires_grad_(False)
    teacher = shard_teacher(cfg, teacher, parallel)
    materialize_model(teacher, parallel.device)
    return teacher


class Distillation:
    """A frozen teacher and the losses that compare a student with it.

    ``train_step`` and ``validation_loss`` hand a loss the student's logits and the labels
    only. The teacher's logits for the same micro-batch come from ``teacher_pass``, the
    per-micro-batch hook both take: it runs the teacher and holds its logits while the
    context it returns is open (the student's forward and backward).

    Attributes:
        parts: the CE and KD terms summed over the micro-batches since ``parts`` was zeroed,
            each divided by the step's label tokens (on this rank).
        kl_sum: the student's KL to the teacher at temperature 1, summed over the label tokens
            of the validation batches since it was zeroed (on this rank).
    """

    def __init__(
        self,
        teacher: torch.nn.Module,
        ce_loss: Callable[..., torch.Tensor],
        kd_loss: Callable[..., torch.Tensor],
        kd_ratio: float,
        reshard: Callable[[torch.nn.Module], None],
        device: torch.device,
    ) -> None:
        self.teacher = teacher
        self.ce_loss = ce_loss
        self.kd_loss = kd_loss
        self.kd_ratio = kd_ratio
        self.reshard = reshard
        self.kl = KDLoss(temperature=1.0)
        self.parts = torch.zeros(2, device=device)
        self.kl_sum = torch.zeros((), dtype=torch.float64, device=device)
        self._teacher_logits: torch.Tensor | None = None

    def teacher_pass(self, batch: dict) -> tuple[contextlib.AbstractContextManager, dict]:
        """Run the teacher on ``batch`` without gradients; return a context that holds its logits for the loss,
        and the batch unchanged."""
        inputs = {key: batch[key] for key in MODEL_INPUTS if key in batch}
        with torch.no_grad():
            logits = self.teacher(**inputs, use_cache=False).logits
        self.reshard(self.teacher)
        return self._holding(logits), batch

    @contextlib.contextmanager
    def _holding(self, logits: torch.Tensor) -> Iterator[None]:
        self._teacher_logits = logits
        try:
            yield
        finally:
            self._teacher_logits = None

    def _teacher(self) -> torch.Tensor:
        if self._teacher_logits is None:
            raise RuntimeError("the distillation losses must run inside the context teacher_pass returns")
        return self._teacher_logits

    def training_loss(self, logits: torch.Tensor, labels: torch.Tensor, num_label_tokens: Any = None) -> torch.Tensor:
        """Return ``(1 - kd_ratio) * CE + kd_ratio * KD`` of the student's ``logits``; add both terms to ``parts``."""
        ce = self.ce_loss(logits, labels, num_label_tokens)
        kd = self.kd_loss(logits, self._teacher(), labels, num_label_tokens)
        self.parts += torch.stack([ce.detach(), kd.detach()]).to(self.parts.dtype)
        return (1 - self.kd_ratio) * ce + self.kd_ratio * kd

    def validation_loss(self, logits: torch.Tensor, labels: torch.Tensor, num_label_tokens: Any = None) -> torch.Tensor:
        """Return the student's CE (reported as ``val_loss``); add its summed KL to the teacher to ``kl_sum``."""
        self.kl_sum += self.kl(logits, self._teacher(), labels, num_label_tokens=1).detach().double()
        return self.ce_loss(logits, labels, num_label_tokens)


class KnowledgeDistillationRecipeForNextTokenPrediction(TrainFinetuneRecipeForNextTokenPrediction):
    """Train a causal LM on ``(1 - kd_ratio) * CE + kd_ratio * KD`` to a frozen teacher; see the module docstring."""

    def setup(self) -> None:
        """Build what train_ft builds, plus the teacher and the distillation loss."""
        cfg = self.cfg
        refuse_moved_sections(cfg, MISPLACED_TRACKERS, "experiment trackers are set under `logging:`")
        check_config(cfg, KD, KD_REQUIRED, "kd", "examples/llm_kd")
        kd_ratio = read_kd_ratio(cfg)
        kd_loss = build_kd_loss_fn(cfg)
        peft_summary = self._setup_model()
        teacher = build_teacher(cfg, self.parallel, self.hf_model, self.tokenizer)
        self._setup_training(peft_summary)
        if getattr(self.loss_fn, "needs_hidden_states", False):
            raise config_error(
                cfg,
                f"{type(self.loss_fn).__name__} never builds the student's logits, which kd compares with the "
                "teacher's",
                "loss_fn",
                "use automodel.training.MaskedCrossEntropy (the default)",
            )
        self.distillation = Distillation(teacher, self.loss_fn, kd_loss, kd_ratio, self.parallel.reshard, self.device)
        self.loss_fn = self.distillation.training_loss
        self.val_kl: float | None = None

    def _micro_batch_hook(self) -> Any:
        """Every micro-batch, in training and validation, runs the teacher first."""
        return self.distillation.teacher_pass

    def _train_step(self, micro_batches: list[dict]) -> Any:
        """Run one optimizer step, collecting its CE and KD terms in ``distillation.parts``."""
        self.distillation.parts.zero_()
        return super()._train_step(micro_batches)

    def _summed_over_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        reduce = self.parallel.sum_over_data_parallel()
        return tensor if reduce is None else reduce(tensor)

    def _log(self, result: Any, lr: float, tps: float, tokens_per_row: float, extra: dict | None = None) -> None:
        """Log as train_ft does, with the step's CE and KD terms as ``ce_loss`` and ``kd_loss``."""
        ce, kd = self._summed_over_ranks(self.distillation.parts).tolist()
        super()._log(result, lr, tps, tokens_per_row, {"ce_loss": ce, "kd_loss": kd, **(extra or {})})

    def _validation_metrics(self) -> dict:
        """Return the student's ``val_loss``, ``val_ppl``, ``val_tokens`` and ``val_kl`` (its mean KL per label
        token to the teacher at temperature 1)."""
        distillation = self.distillation
        distillation.kl_sum.zero_()
        metrics = validation_loss(
            self.model,
            self.val_dataloader,
            distillation.validation_loss,
            self.device,
            all_reduce=self.parallel.sum_over_data_parallel(),
            prepare_micro_batch=distillation.teacher_pass,
        )
        kl_sum = float(self._summed_over_ranks(distillation.kl_sum))
        self.val_kl = kl_sum / metrics["val_tokens"] if metrics["val_tokens"] else math.nan
        return {**metrics, "val_kl": self.val_kl}

    def _farewell(self, last_step: Any) -> None:
        if self.val_kl is not None:
            self.progress.message(f"student KL to teacher on held-out data: {self.val_kl:.4g}")
        super()._farewell(last_step)


def main(cfg: ConfigNode | None = None) -> int:
    """Run kd on ``cfg`` (default: the config named by ``-c`` in sys.argv); return the exit status."""
    return run_recipe(KnowledgeDistillationRecipeForNextTokenPrediction, cfg)


if __name__ == "__main__":
    sys.exit(main_reporting_user_errors(main))

__all__ = [
    "Distillation",
    "KnowledgeDistillationRecipeForNextTokenPrediction",
    "build_kd_loss_fn",
    "build_teacher",
    "check_same_tokenizer",
    "main",
    "read_kd_ratio",
    "shard_teacher",
]
