"""Rank functions for test_tp: tiny Hugging Face models trained and sampled under TP, next to an unsharded copy."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate
from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel
from transformers import AutoConfig, AutoModelForCausalLM

from automodel.distributed.config import parse_distributed_config, resolve_sizes
from automodel.distributed.errors import DistributedError
from automodel.distributed.mesh import build_device_mesh
from automodel.distributed.parallelize import parallelize_model
from automodel.distributed.tp import apply_tensor_parallel, gathered_logits, sharded_logits_loss

VOCAB = 128
STEPS = 3
SIZES = {
    "vocab_size": VOCAB,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 1,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 16,
    "max_position_embeddings": 64,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
}
FAMILIES = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2", "gemma3_text")
# Families with sliding-window attention get a window shorter than the 8-token batches.
SLIDING = ("mistral", "gemma2", "gemma3_text")

# A user plan by import path (distributed.tp_plan: tp_workers.MLP_PLAN): only the MLPs are sharded.
MLP_PLAN = {
    "model.layers.*.mlp.gate_proj": ColwiseParallel(),
    "model.layers.*.mlp.up_proj": ColwiseParallel(),
    "model.layers.*.mlp.down_proj": RowwiseParallel(),
}
# Plans that must be refused: a Hugging Face style with no torch translation, a module name
# with a typo, and an LM head sharded apart from the embedding it is tied to.
UNKNOWN_STYLE_PLAN = {"model.layers.*.mlp.experts": "grouped_gemm"}
TYPO_PLAN = {"model.layer.*.mlp.up_proj": ColwiseParallel()}
HEAD_ONLY_PLAN = {"lm_head": ColwiseParallel(output_layouts=Replicate())}


def attention_plan(model: torch.nn.Module) -> dict[str, Any]:
    """A user plan as a function of the model, in Hugging Face style names, with a gathered LM head."""
    plan: dict[str, Any] = {f"model.layers.*.self_attn.{name}": "colwise" for name in ("q_proj", "k_proj", "v_proj")}
    plan["model.layers.*.self_attn.o_proj"] = "rowwise"
    plan["lm_head"] = ColwiseParallel(output_layouts=Replicate())
    return plan


# name -> (model_type, config overrides, distributed.tp_plan, distributed.sequence_parallel)
TRAINING_CASES: dict[str, tuple[str, dict[str, Any], str | None, bool]] = {
    **{family: (family, {}, None, False) for family in FAMILIES},
    # Sequence parallelism on each distinct layer layout: plain, biased q/k/v, per-head q/k norms,
    # and Gemma's sandwich norms with scaled, tied embeddings, soft-capped logits and sliding windows.
    **{f"{family}-sp": (family, {}, None, True) for family in ("llama", "qwen2", "qwen3", "gemma2", "gemma3_text")},
    "llama-tied": ("llama", {"tie_word_embeddings": True}, None, False),
    "phi3-hf-plan": ("phi3", {}, None, False),
    "user-plan-dict": ("llama", {}, "tp_workers.MLP_PLAN", False),
    "user-plan-function": ("qwen2", {}, "tp_workers.attention_plan", False),
}


def tiny_model(model_type: str, **overrides: Any) -> torch.nn.Module:
    """A 1-layer fp32 causal LM of ``model_type`` (seed 0); gemma2 uses eager attention, the rest SDPA."""
    torch.manual_seed(0)
    window = {"sliding_window": 4} if model_type in SLIDING else {}
    config = AutoConfig.for_model(model_type, **{**SIZES, **window, **overrides})
    attention = "eager" if model_type == "gemma2" else "sdpa"
    return AutoModelForCausalLM.from_config(config, attn_implementation=attention)


def batches() -> list[dict[str, torch.Tensor]]:
    """STEPS batches of 2 x 8 tokens (the same on every rank): some labels masked, the second row right-padded."""
    generator = torch.Generator().manual_seed(1)
    out = []
    for _ in range(STEPS):
        input_ids = torch.randint(3, VOCAB, (2, 8), generator=generator)
        labels = torch.randint(0, VOCAB, (2, 8), generator=generator)
        attention_mask = torch.ones_like(input_ids)
        labels[0, :3] = -100
        input_ids[1, 6:], labels[1, 6:], attention_mask[1, 6:] = 0, -100, 0
        out.append({"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask})
    return out


def token_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The training step's loss: token cross-entropy summed in fp32, divided by the label tokens."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False).logits
    loss = F.cross_entropy(
        logits.float().reshape(-1, logits.size(-1)), batch["labels"].reshape(-1), ignore_index=-100, reduction="sum"
    )
    return loss / (batch["labels"] != -100).sum()


def _full(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.full_tensor() if isinstance(tensor, DTensor) else tensor


def train(model: torch.nn.Module, context: Callable[[], Any]) -> dict[str, Any]:
    """Run STEPS AdamW steps, each forward and backward inside ``context()``.

    Returns the losses, the first step's whole gradients by parameter name, and whether
    every loss was a plain tensor.
    """
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    out: dict[str, Any] = {"losses": [], "plain_loss": True}
    for step, batch in enumerate(batches()):
        with context():
            loss = token_loss(model, batch)
            loss.backward()
        out["plain_loss"] &= not isinstance(loss, DTensor)
        out["losses"].append(loss.item())
        if step == 0:
            out["grads"] = {name: _full(param.grad).clone() for name, param in model.named_parameters()}
        optimizer.step()
        optimizer.zero_grad()
    return out


def compare(model: torch.nn.Module, reference: torch.nn.Module) -> dict[str, Any]:
    """Train the sharded ``model`` under ``sharded_logits_loss`` and the unsharded ``reference``; report both."""
    sharded = train(model, sharded_logits_loss)
    expected = train(reference, torch.enable_grad)
    assert sharded["grads"].keys() == expected["grads"].keys()
    differences = [(sharded["grads"][k] - expected["grads"][k]).abs().max().item() for k in expected["grads"]]
    return {
        "losses": sharded["losses"],
        "reference": expected["losses"],
        "grad_difference": max(differences),
        "plain_loss": sharded["plain_loss"],
        "tied": model.get_output_embeddings().weight is model.get_input_embeddings().weight,
        "sharded_norm": isinstance(model.model.norm.weight, DTensor),
        "sharded_head": isinstance(model.lm_head.weight, DTensor),
    }


def training_case(mesh: DeviceMesh, name: str) -> dict[str, Any]:
    """Shard TRAINING_CASES[name] with ``apply_tensor_parallel`` on ``mesh['tp']`` and compare it with one process."""
    model_type, overrides, plan, sequence_parallel = TRAINING_CASES[name]
    model = tiny_model(model_type, **overrides)
    reference = copy.deepcopy(model)
    apply_tensor_parallel(model, mesh["tp"], plan=plan, sequence_parallel=sequence_parallel)
    return compare(model, reference)


def parallelize_case(mesh: DeviceMesh) -> dict[str, Any]:
    """Qwen3 with sequence parallelism through ``parallelize_model`` (TP, then FSDP2 on the size-1 data dim)."""
    config = parse_distributed_config({"tp_size": 2, "sequence_parallel": True})
    model = tiny_model("qwen3")
    reference = copy.deepcopy(model)
    return compare(parallelize_model(model, mesh, config, torch.device("cpu")), reference)


def generation_case(mesh: DeviceMesh, sequence_parallel: bool) -> dict[str, Any]:
    """Greedy-generate 6 tokens with a TP Llama under ``gathered_logits`` and with an unsharded copy."""
    model = tiny_model("llama")
    reference = copy.deepcopy(model)
    apply_tensor_parallel(model, mesh["tp"], sequence_parallel=sequence_parallel)
    prompt = torch.tensor([[5, 9, 17, 33, 8]])
    options = {"max_new_tokens": 6, "min_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    with torch.no_grad(), gathered_logits(model):
        tokens = model.generate(prompt, **options)
    with torch.no_grad():
        expected = reference.generate(prompt, **options)
        logits_after = model(input_ids=prompt).logits
    return {
        "tokens": tokens.tolist(),
        "expected": expected.tolist(),
        "dtensor_after": isinstance(logits_after, DTensor),
    }


def tied_head_only_error(mesh: DeviceMesh) -> str:
    """The message refusing a plan that shards the LM head of a tied Llama but not its embedding."""
    model = tiny_model("llama", tie_word_embeddings=True)
    try:
        apply_tensor_parallel(model, mesh["tp"], plan="tp_workers.HEAD_ONLY_PLAN")
    except DistributedError as error:
        return str(error)
    return "no error"


def run_all() -> dict[str, Any]:
    """Every two-rank check of test_tp, on one ``tp_size: 2`` mesh (building a mesh costs seconds on gloo)."""
    sizes = resolve_sizes(parse_distributed_config({"tp_size": 2}), 2)
    mesh = build_device_mesh(sizes, "cpu")
    training = {name: training_case(mesh, name) for name in TRAINING_CASES}
    training["qwen3-sp-parallelize_model"] = parallelize_case(mesh)
    generation = {"tp": generation_case(mesh, False), "tp-sp": generation_case(mesh, True)}
    return {"training": training, "generation": generation, "tied_head_only": tied_head_only_error(mesh)}
