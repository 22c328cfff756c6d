"""Losses over pre-shifted labels (``labels[i]`` is the target of position i; -100 is ignored).

Each loss sums over the label tokens of one micro-batch and divides by
``num_label_tokens``, the label-token count of the whole optimizer step (all micro-batches,
all data-parallel ranks). Summing the micro-batch losses then gives the same value and
gradient as one big batch, however the step is split.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from automodel.training.errors import TrainingError
from automodel.training.linear_ce import linear_cross_entropy

IGNORE_INDEX = -100
TEXT_INPUTS = ("input_ids", "attention_mask", "position_ids")
# What image-text processors add (Llava, Qwen2-VL, Gemma 3, Idefics, ...), passed to the model as they are.
IMAGE_INPUTS = (
    "pixel_values",
    "image_sizes",
    "image_grid_thw",
    "pixel_attention_mask",
    "token_type_ids",
    "mm_token_type_ids",
)
MODEL_INPUTS = TEXT_INPUTS + IMAGE_INPUTS


def _denominator(labels: torch.Tensor, num_label_tokens: int | torch.Tensor | None, ignore_index: int) -> Any:
    if num_label_tokens is None:
        num_label_tokens = (labels != ignore_index).sum()
    return torch.clamp(torch.as_tensor(num_label_tokens, device=labels.device), min=1)


def _label_rows(
    hidden_states: torch.Tensor, labels: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The hidden-state rows ``[N, H]`` of the label positions and their targets ``[N]``."""
    flat_labels = labels.reshape(-1)
    keep = flat_labels != ignore_index
    return hidden_states.reshape(-1, hidden_states.shape[-1])[keep], flat_labels[keep]


class MaskedCrossEntropy:
    """Cross-entropy from full logits, in fp32, over positions whose label is not ``ignore_index``.

    Call with ``(logits [B, T, V], labels [B, T], num_label_tokens=None)``; returns the
    summed token loss divided by ``num_label_tokens`` (default: this batch's label count).
    """

    needs_hidden_states = False

    def __init__(self, ignore_index: int = IGNORE_INDEX, fp32_upcast: bool = True) -> None:
        self.ignore_index = ignore_index
        self.fp32_upcast = fp32_upcast

    def __call__(
        self, logits: torch.Tensor, labels: torch.Tensor, num_label_tokens: int | torch.Tensor | None = None
    ) -> torch.Tensor:
        logits = logits.float() if self.fp32_upcast else logits
        total = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=self.ignore_index, reduction="sum"
        )
        return total / _denominator(labels, num_label_tokens, self.ignore_index)


class ChunkedCrossEntropy:
    """Cross-entropy computed from hidden states and the LM-head weight, a chunk of tokens at a time.

    Only label positions are projected, ``chunk_size`` tokens at once, and each chunk's
    gradients are computed right after its loss (``linear_cross_entropy``), so neither the
    ``[tokens, vocab]`` logits nor their gradient ever exist and nothing is recomputed.
    Call with ``(hidden_states [B, T, H], weight [V, H], labels [B, T], num_label_tokens=None,
    bias=None)``. Not for models that transform logits after
    the head (e.g. Gemma 2 soft-capping).
    """

    needs_hidden_states = True

    def __init__(self, chunk_size: int = 1024, ignore_index: int = IGNORE_INDEX) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.chunk_size = chunk_size
        self.ignore_index = ignore_index

    def __call__(
        self,
        hidden_states: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        num_label_tokens: int | torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden, targets = _label_rows(hidden_states, labels, self.ignore_index)
        denominator = _denominator(labels, num_label_tokens, self.ignore_index)
        return linear_cross_entropy(hidden, weight, targets, denominator, bias, self.chunk_size)


class CutCrossEntropy:
    """Cross-entropy from hidden states and the LM-head weight with Apple's Cut Cross-Entropy kernels (CUDA).

    The same contract as ``ChunkedCrossEntropy`` (``needs_hidden_states = True``; call with
    ``(hidden_states [B, T, H], weight [V, H], labels [B, T], num_label_tokens=None, bias=None)``),
    computed by ``cut_cross_entropy.linear_cross_entropy``, which never writes the logits to
    GPU memory. ``filter_eps`` is passed on: the library's default (``"high"``) skips gradient
    entries below that threshold; ``None`` computes them all. Needs CUDA and the
    ``cut-cross-entropy`` package; asking for it without either is a TrainingError saying so.
    Heads with a bias are refused.
    """

    needs_hidden_states = True

    def __init__(self, ignore_index: int = IGNORE_INDEX, filter_eps: float | str | None = "high") -> None:
        problem = cut_cross_entropy_problem()
        if problem is not None:
            raise TrainingError(problem)
        self.ignore_index = ignore_index
        self.filter_eps = filter_eps

    def __call__(
        self,
        hidden_states: torch.Tensor,
        weight: torch.Tensor,
        labels: torch.Tensor,
        num_label_tokens: int | torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        from cut_cross_entropy import linear_cross_entropy as cce_linear_cross_entropy

        if bias is not None:
            raise TrainingError("CutCrossEntropy does not support an LM head with a bias; use ChunkedCrossEntropy")
        hidden, targets = _label_rows(hidden_states, labels, self.ignore_index)
        denominator = _denominator(labels, num_label_tokens, self.ignore_index)
        if hidden.shape[0] == 0:
            return hidden.sum(dtype=torch.float32)
        total = cce_linear_cross_entropy(
            hidden, weight.to(hidden.dtype), targets, reduction="sum", filter_eps=self.filter_eps
        )
        return total.float() / denominator


def cut_cross_entropy_problem() -> str | None:
    """Return why CutCrossEntropy cannot run here (no CUDA, package missing), or None when it can."""
    if not torch.cuda.is_available():
        return (
            "CutCrossEntropy needs a CUDA GPU (its kernels are written in Triton) and this machine has none; "
            "use automodel.training.ChunkedCrossEntropy, which never builds the logits either and runs on CPU"
        )
    if importlib.util.find_spec("cut_cross_entropy") is None:
        return "CutCrossEntropy needs the cut-cross-entropy package; run `pip install cut-cross-entropy`"
    return None


def _upcast(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


def _chunk_kl(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    log_student = F.log_softmax(_upcast(student) / temperature, dim=-1)
    log_teacher = F.log_softmax(_upcast(teacher) / temperature, dim=-1)
    return F.kl_div(log_student, log_teacher, reduction="sum", log_target=True)


class KDLoss:
    """Knowledge-distillation loss: forward KL(teacher || student) over the label positions.

    Call with ``(student_logits [B, T, V], teacher_logits [B, T, V], labels [B, T],
    num_label_tokens=None)``; returns ``temperature**2 * sum KL(softmax(teacher / temperature)
    || softmax(student / temperature))`` over the positions whose label is not
    ``ignore_index`` (Hinton's scaling, which keeps gradients comparable across
    temperatures), divided by ``num_label_tokens`` (default: this batch's label count) as
    MaskedCrossEntropy is, so gradient accumulation and data parallelism stay exact. Labels
    only choose positions; their values are not read.

    The label positions are taken ``chunk_size`` at a time and upcast to fp32 (at least) inside
    ``torch.utils.checkpoint``, which recomputes each chunk in the backward pass: fp32 copies
    of the whole teacher and student logits never exist at once. The logits in the model's
    dtype, and their label-position rows, do.
    """

    needs_hidden_states = False

    def __init__(self, temperature: float = 1.0, chunk_size: int = 1024, ignore_index: int = IGNORE_INDEX) -> None:
        if not temperature > 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self.temperature = float(temperature)
        self.chunk_size = chunk_size
        self.ignore_index = ignore_index

    def __call__(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        labels: torch.Tensor,
        num_label_tokens: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        if student_logits.shape != teacher_logits.shape:
            raise ValueError(
                f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} "
                "differ in shape; the two models must share a vocabulary"
            )
        vocab = student_logits.shape[-1]
        keep = labels.reshape(-1) != self.ignore_index
        student = student_logits.reshape(-1, vocab)[keep]
        teacher = teacher_logits.detach().reshape(-1, vocab)[keep]
        if student.shape[0] == 0:
            return student.sum(dtype=torch.float32)
        total = sum(
            checkpoint(_chunk_kl, s, t, self.temperature, use_reentrant=False)
            for s, t in zip(student.split(self.chunk_size), teacher.split(self.chunk_size), strict=True)
        )
        return total * self.temperature**2 / _denominator(labels, num_label_tokens, self.ignore_index)


def logits_of(output: Any) -> torch.Tensor:
    """Return the logits in a model's ``output``: the default output adapter of ``forward_loss``.

    Takes a tensor (a plain ``nn.Module`` returning logits), a mapping with ``"logits"``, an object
    with a ``logits`` attribute (Hugging Face ``ModelOutput``) or a tuple or list whose first item is
    the logits. Raises TrainingError naming the output's type otherwise.
    """
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping) and isinstance(output.get("logits"), torch.Tensor):
        return output["logits"]
    if isinstance(getattr(output, "logits", None), torch.Tensor):
        return output.logits
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]
    raise TrainingError(
        f"cannot find the logits in the model's output of type {type(output).__name__}; return a tensor, a dict "
        "with 'logits', an object with .logits or a tuple starting with them, or pass output_logits=<a function "
        "from the model's output to its logits [batch, tokens, vocab]>"
    )


def model_inputs(model: torch.nn.Module, batch: dict) -> dict:
    """Return the keyword arguments ``model`` is called with for ``batch``.

    The batch's ``MODEL_INPUTS`` that the model's ``forward`` accepts (all of them, plus
    ``use_cache=False``, for a forward taking ``**kwargs`` or ``use_cache``, as Hugging Face models
    do). A data-parallel wrapper's inner ``module`` is the one inspected.
    """
    inputs = {key: batch[key] for key in MODEL_INPUTS if key in batch}
    parameters = inspect.signature(getattr(model, "module", model).forward).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return {**inputs, "use_cache": False}
    accepted = {key: value for key, value in inputs.items() if key in parameters}
    return {**accepted, "use_cache": False} if "use_cache" in parameters else accepted


def forward_loss(
    model: torch.nn.Module,
    batch: dict,
    loss_fn: Any,
    num_label_tokens: Any = None,
    *,
    output_logits: Callable[[Any], torch.Tensor] = logits_of,
) -> torch.Tensor:
    """Run a model on ``batch`` and return ``loss_fn``'s loss.

    ``batch`` holds ``input_ids`` and ``labels`` and optionally ``attention_mask`` and
    ``position_ids`` (a packed batch has no attention mask; transformers then keeps
    attention inside each packed sample), plus the image inputs of ``IMAGE_INPUTS``
    (``pixel_values``, ...) for a vision-language model. The model is a Hugging Face causal LM
    or image-text model, or any ``nn.Module`` whose ``forward`` takes ``input_ids`` (and whichever
    other inputs it names; see ``model_inputs``); ``output_logits`` turns its output into
    logits [B, T, V] (default ``logits_of``: a tensor, ``output["logits"]``, ``output.logits`` or
    ``output[0]``). A loss with ``needs_hidden_states = True`` gets the decoder's last hidden
    state and the output embedding weight instead of logits (Hugging Face models only); it cannot
    see images, so a batch with image inputs is a TrainingError for it.
    """
    if getattr(loss_fn, "needs_hidden_states", False):
        if any(key in batch for key in IMAGE_INPUTS):
            raise TrainingError(
                f"{type(loss_fn).__name__} reads the language model's hidden states, which skips the images of an "
                "image-text batch; use automodel.training.MaskedCrossEntropy for vision-language models"
            )
        inputs = {key: batch[key] for key in MODEL_INPUTS if key in batch}
        hidden = model.get_decoder()(**inputs, use_cache=False).last_hidden_state
        head = model.get_output_embeddings()
        return loss_fn(hidden, head.weight, batch["labels"], num_label_tokens, bias=head.bias)
    logits = output_logits(model(**model_inputs(model, batch)))
    return loss_fn(logits, batch["labels"], num_label_tokens)
