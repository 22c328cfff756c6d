"""Rank functions for test_sharded_loading: models built on the meta device, sharded, then given their weights."""

from __future__ import annotations

import ctypes
import resource
from pathlib import Path
from typing import Any

import torch
from torch.distributed.tensor import DTensor

from automodel.distributed import setup_parallelism
from automodel.models import AutoModelForCausalLM, defer_weights, materialize_model, tiny_llama_config
from automodel.peft import LoRAConfig, apply_lora

CONFIG = tiny_llama_config(vocab_size=256)
INPUT_IDS = torch.arange(32).reshape(2, 16) % 256
_M_MMAP_THRESHOLD, _M_ARENA_MAX = -3, -8  # mallopt's parameter numbers, from glibc's malloc.h
LORA = LoRAConfig(dim=4, alpha=8, match_all_linear=True, init="gaussian")


def build(source: str | None, distributed: dict, strategy: str = "sharded", lora: bool = False) -> tuple:
    """Build the model (from ``source``'s files, or from CONFIG with seed 3) the way a recipe does, seeded 5 for
    adapters; return it with its weights, and the Parallelism. On one process nothing is deferred."""
    parallel = setup_parallelism(distributed if torch.distributed.is_initialized() else None)
    torch.manual_seed(5)
    with defer_weights(parallel.env.world_size > 1):
        if source is None:
            model = AutoModelForCausalLM.from_config(CONFIG, seed=3, load_strategy=strategy)
        else:
            model = AutoModelForCausalLM.from_pretrained(source, load_strategy=strategy)
        if lora:
            apply_lora(model, LORA)
    model = parallel.parallelize(model)
    model.automodel_load_report = materialize_model(model, parallel.device)
    return model, parallel


def full_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every tensor of the model's state dict, whole (DTensors gathered)."""
    return {
        name: (value.full_tensor() if isinstance(value, DTensor) else value).detach().clone()
        for name, value in model.state_dict().items()
    }


def weights_and_logits(
    source: str | None, distributed: dict, strategy: str = "sharded", lora: bool = False
) -> dict[str, Any]:
    """Build as ``build`` does and return the whole weights, the logits of INPUT_IDS, the load report and the
    generator's state after the build."""
    model, parallel = build(source, distributed, strategy, lora)
    rng_after_build = torch.random.get_rng_state()
    with torch.no_grad(), parallel.generation(model) as inner:
        logits = inner(input_ids=INPUT_IDS).logits
    return {
        "state": full_state(model),
        "logits": logits.detach().clone(),
        "report": model.automodel_load_report,
        "rng": rng_after_build,
    }


def lora_training_under_memory_limit(source: str, strategy: str, limit_bytes: int, steps: int) -> dict[str, Any]:
    """Cap this process's address space at its size once in the process group plus ``limit_bytes``, then build
    the model from ``source`` under FSDP2 with LoRA and train it ``steps`` steps.

    Returns ``{"losses": [...]}``, or ``{"out_of_memory": message}`` when an allocation failed (caught here,
    where the memory is given back, so that the result can still be sent).

    glibc's malloc is given a fixed mmap threshold first (as ``MALLOC_MMAP_THRESHOLD_=1048576`` would):
    with its default, moving threshold, the buffers FSDP2 gathers and frees block by block stay in the
    heap, and the process keeps about the whole model however it was loaded. One arena
    (``MALLOC_ARENA_MAX=1``) keeps threads from reserving 64 MiB of address space each.
    """
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(_M_MMAP_THRESHOLD, 1 << 20)
    libc.mallopt(_M_ARENA_MAX, 1)
    setup_parallelism({"strategy": "fsdp2"})
    resource.setrlimit(resource.RLIMIT_AS, (_status("VmSize") + limit_bytes, resource.RLIM_INFINITY))
    try:
        return {"losses": _train_lora(source, strategy, steps)}
    except (MemoryError, RuntimeError) as error:
        if "memory" not in str(error).lower():
            raise
        message = str(error)
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    return {"out_of_memory": message}


def _train_lora(source: str, strategy: str, steps: int) -> list[float]:
    model, _ = build(source, {"strategy": "fsdp2"}, strategy, lora=True)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    ids = torch.arange(16).reshape(1, 16)
    losses = []
    for _ in range(steps):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(float(loss))
    return losses


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")
