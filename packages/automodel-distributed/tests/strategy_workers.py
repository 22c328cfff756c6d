"""Rank functions for test_strategies: train a tiny Llama under a strategy and return its per-step losses."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from automodel.distributed.config import parse_distributed_config, resolve_sizes
from automodel.distributed.ddp import unwrap_model
from automodel.distributed.mesh import build_device_mesh, data_parallel_coordinates, sum_over_data_parallel
from automodel.distributed.parallelize import parallelize_model

GLOBAL_BATCH = 4
STEPS = 3


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    """A 2-layer fp32 Llama small enough to train in milliseconds."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation="sdpa",
    )
    return LlamaForCausalLM(config)


def batches() -> list[dict[str, torch.Tensor]]:
    """STEPS global batches of GLOBAL_BATCH rows with uneven label counts (some labels masked)."""
    generator = torch.Generator().manual_seed(1)
    out = []
    for _ in range(STEPS):
        input_ids = torch.randint(0, 96, (GLOBAL_BATCH, 12), generator=generator)
        labels = torch.randint(0, 96, (GLOBAL_BATCH, 12), generator=generator)
        labels[0, :7] = -100
        labels[3, :2] = -100
        out.append({"input_ids": input_ids, "labels": labels})
    return out


def train(model: torch.nn.Module, rows: slice, all_reduce=None) -> list[float]:
    """Train STEPS AdamW steps on ``rows`` of each global batch; losses are sums over tokens / global tokens."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for batch in batches():
        total = (batch["labels"] != -100).sum()
        logits = model(input_ids=batch["input_ids"][rows], use_cache=False).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"][rows].flatten(), reduction="sum") / total
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        detached = loss.detach()
        losses.append(float(all_reduce(detached) if all_reduce else detached))
    return losses


def reference_losses() -> list[float]:
    """The single-process run over whole global batches."""
    return train(tiny_llama(), slice(None))


def distributed_losses(section: dict) -> dict:
    """Train under ``section`` (a ``distributed:`` mapping) on this rank's rows; return losses and facts."""
    config = parse_distributed_config(section)
    mesh = build_device_mesh(resolve_sizes(config, dist.get_world_size()), "cpu")
    dp_rank, dp_size = data_parallel_coordinates(mesh)
    model = parallelize_model(tiny_llama(), mesh, config, torch.device("cpu"))
    per_rank = GLOBAL_BATCH // dp_size
    losses = train(model, slice(dp_rank * per_rank, (dp_rank + 1) * per_rank), sum_over_data_parallel(mesh))
    inner = unwrap_model(model)
    weight = inner.model.layers[0].mlp.up_proj.weight
    full = weight.full_tensor() if hasattr(weight, "full_tensor") else weight
    return {
        "losses": losses,
        "wrapper": type(model).__name__,
        "local_rows": weight.to_local().shape[0] if hasattr(weight, "to_local") else weight.shape[0],
        "up_proj": full.detach().clone(),
        "checkpointed": inner.model.gradient_checkpointing if hasattr(inner.model, "gradient_checkpointing") else None,
    }


def reference_weights() -> torch.Tensor:
    """The single-process run's up_proj weight of block 0 after training."""
    model = tiny_llama()
    train(model, slice(None))
    return model.model.layers[0].mlp.up_proj.weight.detach().clone()
