"""Tensor parallelism with DTensor: which plan a model gets, sharding it, and reading its vocabulary-sharded logits.

A plan maps module names (globs such as ``model.layers.*.mlp.up_proj`` allowed) to torch
``ParallelStyle`` objects. It comes from, in order: ``distributed.tp_plan`` (an import path),
the built-in plans of the Llama, Qwen2, Qwen3, Mistral and Gemma families, or the model's own
Hugging Face plan (``_tp_plan`` / ``config.base_model_tp_plan``) translated to torch styles.

The built-in plans leave the logits as a DTensor sharded over the vocabulary, so the loss is
computed without gathering them (``sharded_logits_loss``); ``gathered_logits`` gathers them
for ``generate``. Gemma's embedding scale and Gemma2/3's logit soft-capping are elementwise,
so they run on the sharded tensors unchanged; tied embeddings stay one weight. With
``sequence_parallel`` the residual stream between layers is a DTensor sharded on the
sequence, whose ``.shape`` stays global, so Hugging Face's position ids and causal or
sliding-window masks come out as in one process.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Iterator, Mapping
from fnmatch import fnmatch
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    PrepareModuleInput,
    RowwiseParallel,
    SequenceParallel,
    loss_parallel,
    parallelize_module,
)
from torch.overrides import TorchFunctionMode

from automodel.distributed.errors import DistributedError

_NORMS = ("input_layernorm", "post_attention_layernorm")
_SANDWICH_NORMS = (*_NORMS, "pre_feedforward_layernorm", "post_feedforward_layernorm")

# model_type -> (the norms of one decoder layer, whether attention has per-head q_norm/k_norm)
BUILT_IN_FAMILIES: dict[str, tuple[tuple[str, ...], bool]] = {
    "llama": (_NORMS, False),
    "mistral": (_NORMS, False),
    "qwen2": (_NORMS, False),
    "qwen3": (_NORMS, True),
    "gemma": (_NORMS, False),
    "gemma2": (_SANDWICH_NORMS, False),
    "gemma3_text": (_SANDWICH_NORMS, True),
}

DIVISIBLE_KEYS = {
    "num_attention_heads": "each rank must hold whole attention heads",
    "num_key_value_heads": "each rank must hold whole key/value heads",
    "intermediate_size": "the MLP's hidden width is split evenly over the ranks",
    "vocab_size": "the embedding and LM head are split evenly over the vocabulary",
}


def _head_norm() -> ParallelStyle:
    """Style for a norm applied per attention head to this rank's heads (Qwen3's and Gemma3's q_norm/k_norm).

    Its input ``[batch, seq, local heads, head_dim]`` is declared sharded on the heads dim, so
    its weight becomes a replicated DTensor whose gradient is summed over the ranks' heads.
    """
    return SequenceParallel(sequence_dim=2, use_local_output=True)


HF_STYLES: dict[str, Callable[[], ParallelStyle]] = {
    "colwise": ColwiseParallel,
    "rowwise": RowwiseParallel,
    "colwise_gather_output": lambda: ColwiseParallel(output_layouts=Replicate()),
    "colwise_rep": lambda: ColwiseParallel(output_layouts=Replicate()),
    "rowwise_split_input": lambda: RowwiseParallel(input_layouts=Replicate()),
    "rowwise_rep": lambda: RowwiseParallel(input_layouts=Replicate()),
    "embedding_rowwise": lambda: RowwiseParallel(input_layouts=Replicate()),
    "replicated_with_grad_allreduce": _head_norm,
}


def built_in_plan(model_type: str, sequence_parallel: bool = False) -> dict[str, ParallelStyle] | None:
    """Return our plan for a Hugging Face causal LM of ``model_type``, or None when it has none.

    Args:
        model_type: ``config.model_type`` (``llama``, ``qwen3``, ``gemma2``, ...).
        sequence_parallel: the Megatron-style variant, where norms and the residual stream are
            sharded along the sequence (dim 1) between the tensor-parallel regions.

    Returns:
        ``{module name glob: ParallelStyle}`` for ``parallelize_module``. The LM head's output
        is a DTensor sharded over the vocabulary (read it under ``sharded_logits_loss``).
    """
    if model_type not in BUILT_IN_FAMILIES:
        return None
    norms, head_norms = BUILT_IN_FAMILIES[model_type]
    layer = "model.layers.*"
    plan: dict[str, ParallelStyle] = {
        f"{layer}.self_attn.{name}": ColwiseParallel() for name in ("q_proj", "k_proj", "v_proj")
    }
    plan.update({f"{layer}.mlp.{name}": ColwiseParallel() for name in ("gate_proj", "up_proj")})
    if head_norms:
        plan.update({f"{layer}.self_attn.{name}": _head_norm() for name in ("q_norm", "k_norm")})
    if not sequence_parallel:
        plan["model.embed_tokens"] = RowwiseParallel(input_layouts=Replicate())
        plan[f"{layer}.self_attn.o_proj"] = RowwiseParallel()
        plan[f"{layer}.mlp.down_proj"] = RowwiseParallel()
        plan["lm_head"] = ColwiseParallel(output_layouts=Shard(-1), use_local_output=False)
        return plan
    # The residual stream stays a DTensor sharded on the sequence, so ``.shape`` is the global
    # one where Hugging Face builds position ids and the causal mask from it.
    plan["model.embed_tokens"] = RowwiseParallel(
        input_layouts=Replicate(), output_layouts=Shard(1), use_local_output=False
    )
    plan.update({f"{layer}.{name}": SequenceParallel() for name in norms})
    plan["model.norm"] = SequenceParallel()
    plan[f"{layer}.self_attn"] = PrepareModuleInput(
        input_kwarg_layouts={"hidden_states": Shard(1)},
        desired_input_kwarg_layouts={"hidden_states": Replicate()},
        use_local_output=True,
    )
    plan[f"{layer}.mlp"] = PrepareModuleInput(
        input_layouts=(Shard(1),), desired_input_layouts=(Replicate(),), use_local_output=True
    )
    plan[f"{layer}.self_attn.o_proj"] = RowwiseParallel(output_layouts=Shard(1), use_local_output=False)
    plan[f"{layer}.mlp.down_proj"] = RowwiseParallel(output_layouts=Shard(1), use_local_output=False)
    plan["lm_head"] = ColwiseParallel(input_layouts=Shard(1), output_layouts=Shard(-1), use_local_output=False)
    return plan


def _style(name: str, value: Any, source: str) -> ParallelStyle:
    if isinstance(value, ParallelStyle):
        return value
    if isinstance(value, str) and value in HF_STYLES:
        return HF_STYLES[value]()
    raise DistributedError(
        f"the tensor-parallel plan from {source} maps {name!r} to {value!r}, which automodel cannot apply; "
        f"it knows torch ParallelStyle objects and the Hugging Face styles {', '.join(HF_STYLES)}. "
        "Set distributed.tp_plan to the import path of a plan with torch ParallelStyles, or set distributed.tp_size: 1"
    )


def _translate(plan: Mapping[Any, Any], source: str) -> dict[str, ParallelStyle]:
    return {str(name): _style(str(name), value, source) for name, value in plan.items()}


def hf_plan(model: torch.nn.Module) -> dict[str, ParallelStyle] | None:
    """Return the model's own Hugging Face TP plan as torch ParallelStyles, or None when it has none.

    Base-model entries (``config.base_model_tp_plan``) are prefixed with the base model's
    attribute name (``model.``) as Hugging Face does; the model's ``_tp_plan`` (already
    prefixed by Hugging Face) is applied over them.

    Raises:
        DistributedError: a style string that has no torch equivalent here (naming distributed.tp_plan).
    """
    config = getattr(model, "config", None)
    base = dict(getattr(config, "base_model_tp_plan", None) or {})
    prefix = getattr(model, "base_model_prefix", "")
    if prefix and isinstance(getattr(model, prefix, None), torch.nn.Module):
        base = {f"{prefix}.{name}": style for name, style in base.items()}
    plan = {**base, **(getattr(model, "_tp_plan", None) or {})}
    if not plan:
        return None
    return _translate(plan, f"the Hugging Face model ({type(model).__name__})")


def load_plan(path: str, model: torch.nn.Module) -> dict[str, ParallelStyle]:
    """Import the plan named by ``distributed.tp_plan`` and return it as ``{module name glob: ParallelStyle}``.

    Args:
        path: ``package.module.name`` of a dict, or of a callable taking the model and returning one.
            Values may be torch ParallelStyles or Hugging Face style names (``colwise``, ``rowwise``, ...).
        model: the model the plan is for (passed to a callable plan).

    Raises:
        DistributedError: the path does not import, or does not give a mapping of styles.
    """
    module_name, _, attribute = path.rpartition(".")
    advice = (
        "set distributed.tp_plan to the import path of a dict {module name or glob: ParallelStyle} "
        "or of a function taking the model and returning one"
    )
    try:
        plan = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as error:
        raise DistributedError(f"distributed.tp_plan is {path!r}, which does not import ({error}); {advice}") from None
    if callable(plan):
        plan = plan(model)
    if not isinstance(plan, Mapping):
        raise DistributedError(
            f"distributed.tp_plan {path!r} gave a {type(plan).__name__}, not a mapping of module names to styles; "
            f"{advice}"
        )
    return _translate(plan, f"distributed.tp_plan ({path})")


def _text_config(model: torch.nn.Module) -> Any:
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "get_text_config"):
        return config.get_text_config()
    return config


def check_divisible(model: torch.nn.Module, tp_size: int) -> None:
    """Check that the model's heads, MLP width and vocabulary split evenly over ``tp_size`` ranks.

    Sizes absent from the model's config are not checked.

    Raises:
        DistributedError: showing the arithmetic and naming distributed.tp_size.
    """
    config = _text_config(model)
    for key, reason in DIVISIBLE_KEYS.items():
        value = getattr(config, key, None)
        if isinstance(value, int) and value % tp_size:
            raise DistributedError(
                f"the model's {key} ({value}) is not divisible by distributed.tp_size ({tp_size}): "
                f"{value} % {tp_size} = {value % tp_size}, and {reason}; "
                f"set distributed.tp_size to a divisor of {value}"
            )


def _matches(pattern: str, name: str) -> bool:
    parts, atoms = pattern.split("."), name.split(".")
    return len(parts) == len(atoms) and all(fnmatch(atom, part) for part, atom in zip(parts, atoms, strict=True))


def _unmatched(plan: Mapping[str, ParallelStyle], model: torch.nn.Module) -> list[str]:
    names = [name for name, _ in model.named_modules()]
    return [pattern for pattern in plan if not any(_matches(pattern, name) for name in names)]


def _require_matches(plan: dict[str, ParallelStyle], model: torch.nn.Module, source: str) -> dict[str, ParallelStyle]:
    missing = _unmatched(plan, model)
    if missing:
        raise DistributedError(
            f"the tensor-parallel plan from {source} names {', '.join(map(repr, missing))}, which matches no module "
            f"of {type(model).__name__}; fix the names (globs like model.layers.*.mlp.up_proj, see "
            "model.named_modules()) in distributed.tp_plan, or set distributed.tp_size: 1"
        )
    return plan


def choose_plan(
    model: torch.nn.Module, plan: str | None = None, sequence_parallel: bool = False
) -> dict[str, ParallelStyle]:
    """Return the TP plan for ``model``: ``plan`` if given, else the built-in one for its type, else Hugging Face's.

    The built-in plans are chosen by the top-level ``config.model_type`` (a vision-language
    model wrapping a Llama gets Hugging Face's plan, whose names fit its layout). Entries of a
    Hugging Face plan that match no module of this model are left out.

    Args:
        model: the model to shard.
        plan: ``distributed.tp_plan`` (an import path), or None.
        sequence_parallel: ``distributed.sequence_parallel``; ignored for a plan of your own,
            which must bring its own sequence-parallel styles.

    Returns:
        ``{module name glob: ParallelStyle}``, every name matching at least one module.

    Raises:
        DistributedError: no plan exists, the plan does not import or names modules the model
            lacks, or sequence parallelism is asked for a model without a built-in plan.
    """
    if plan is not None:
        return _require_matches(load_plan(plan, model), model, f"distributed.tp_plan ({plan})")
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    chosen = built_in_plan(model_type, sequence_parallel) if model_type else None
    if chosen is not None:
        return _require_matches(chosen, model, f"automodel's built-in {model_type} plan")
    if sequence_parallel:
        raise DistributedError(
            f"distributed.sequence_parallel needs a plan that shards norms along the sequence; automodel has one for "
            f"{', '.join(BUILT_IN_FAMILIES)} but not for model type {model_type!r}; set sequence_parallel: false, "
            "or set distributed.tp_plan to a plan of your own with SequenceParallel styles"
        )
    chosen = hf_plan(model)
    if chosen is None:
        raise DistributedError(
            f"the model type {model_type!r} ({type(model).__name__}) has no tensor-parallel plan: automodel has "
            f"built-in plans for {', '.join(BUILT_IN_FAMILIES)} and the model defines none of its own; "
            "set distributed.tp_plan to the import path of a plan, or set distributed.tp_size: 1"
        )
    unmatched = _unmatched(chosen, model)
    return {pattern: style for pattern, style in chosen.items() if pattern not in unmatched}


def _output_embeddings(model: torch.nn.Module) -> torch.nn.Module | None:
    getter = getattr(model, "get_output_embeddings", None)
    head = getter() if callable(getter) else None
    return head if head is not None else getattr(model, "lm_head", None)


def _output_weight(model: torch.nn.Module) -> torch.nn.Parameter | None:
    head = _output_embeddings(model)
    return getattr(head, "weight", None)


def _input_weight(model: torch.nn.Module) -> torch.nn.Parameter | None:
    getter = getattr(model, "get_input_embeddings", None)
    embeddings = getter() if callable(getter) else None
    return getattr(embeddings, "weight", None)


def _retie(model: torch.nn.Module) -> None:
    embedding, head = _input_weight(model), _output_weight(model)
    if embedding is head:
        return
    same = (
        isinstance(embedding, DTensor)
        and isinstance(head, DTensor)
        and embedding.placements == head.placements
        and embedding.shape == head.shape
    )
    if not same:
        raise DistributedError(
            "the model ties its input and output embeddings (tie_word_embeddings: true), but the tensor-parallel "
            "plan shards the two differently, so they cannot stay one weight; shard both over the vocabulary "
            "(RowwiseParallel(input_layouts=Replicate()) on the embedding, ColwiseParallel on the LM head) in "
            "distributed.tp_plan, or set distributed.tp_size: 1"
        )
    _output_embeddings(model).weight = embedding


def apply_tensor_parallel(
    model: torch.nn.Module, tp_mesh: DeviceMesh, plan: str | None = None, sequence_parallel: bool = False
) -> None:
    """Shard ``model`` in place over the 1-D ``tp_mesh`` with ``parallelize_module``.

    The plan is ``plan`` if given, else the built-in one for the model's type, else the
    model's own Hugging Face plan (see ``choose_plan``). For the built-in and Hugging Face
    plans the heads, MLP width and vocabulary are first checked to split evenly. Tied input
    and output embeddings stay one (vocabulary-sharded) weight. Under ``sequence_parallel``
    the replicated norm weights get ``Partial`` gradients, which FSDP2 (or DTensor, at the
    optimizer step) sums over the TP ranks.

    Args:
        model: the model on its device, not yet sharded by FSDP2.
        tp_mesh: the ``tp`` dim of the device mesh.
        plan: ``distributed.tp_plan`` (an import path), or None.
        sequence_parallel: ``distributed.sequence_parallel``.

    Raises:
        DistributedError: no plan, a plan that does not import or names missing modules, sizes
            that do not divide ``tp_mesh.size()``, or tied embeddings the plan shards differently.
    """
    chosen = choose_plan(model, plan, sequence_parallel)
    if plan is None:
        check_divisible(model, tp_mesh.size())
    tied = _input_weight(model) is not None and _input_weight(model) is _output_weight(model)
    parallelize_module(model, tp_mesh, chosen)
    if tied:
        _retie(model)


class _PlainLoss(TorchFunctionMode):
    """Turns the replicated DTensor that ``F.cross_entropy`` returns under ``loss_parallel`` into a plain tensor."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        if func is F.cross_entropy and isinstance(result, DTensor):
            return result.to_local()
        return result


@contextlib.contextmanager
def sharded_logits_loss() -> Iterator[None]:
    """Let ``F.cross_entropy`` (and ``nn.CrossEntropyLoss``) read logits sharded over the vocabulary.

    Wraps torch's ``loss_parallel``: inside it,
    ``F.cross_entropy(logits.float().reshape(-1, V), labels.reshape(-1), ignore_index=-100, reduction="sum")``
    works on the Shard(-1) DTensor logits of the built-in plans (``.float()`` and ``.reshape``
    keep the vocabulary sharding; ``logits.shape`` / ``size(-1)`` are the global ones), with no
    gather of the logits. Labels are a plain tensor, the same on every TP rank. The loss comes
    back as a plain tensor holding the full value on every rank (the single-process result),
    not a DTensor. Plain-tensor logits are computed as usual. The backward pass must run inside
    the context too.
    """
    with loss_parallel(), _PlainLoss():
        yield


def _full_logits(module: torch.nn.Module, args: Any, output: Any) -> Any:
    return output.full_tensor() if isinstance(output, DTensor) else output


@contextlib.contextmanager
def gathered_logits(model: torch.nn.Module) -> Iterator[None]:
    """While active, make the model's LM head return whole logits as a plain tensor (so ``generate`` works under TP).

    Args:
        model: the tensor-parallel model (its ``get_output_embeddings()``, else its ``lm_head``).

    Raises:
        DistributedError: the model has no output embedding to hook.
    """
    head = _output_embeddings(model)
    if head is None:
        raise DistributedError(
            f"{type(model).__name__} has no output embedding (get_output_embeddings() or lm_head) to gather the "
            "tensor-parallel logits from; generate with distributed.tp_size: 1"
        )
    handle = head.register_forward_hook(_full_logits)
    try:
        yield
    finally:
        handle.remove()
