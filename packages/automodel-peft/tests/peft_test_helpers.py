"""Tiny real models, token batches and adapter perturbations for automodel-peft's tests."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedModel, Qwen2Config, Qwen2ForCausalLM

VOCAB = 64
SIZES = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 64,
}
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]
MLP = ["gate_proj", "up_proj", "down_proj"]


def tiny_llama(seed: int = 0, tie_word_embeddings: bool = False) -> LlamaForCausalLM:
    """A 2-layer Llama (hidden 32, GQA 4/2 heads) in fp32 with eager attention, in eval mode."""
    torch.manual_seed(seed)
    config = LlamaConfig(**SIZES, tie_word_embeddings=tie_word_embeddings, attn_implementation="eager")
    return LlamaForCausalLM(config).float().eval()


def tiny_qwen2(seed: int = 0) -> Qwen2ForCausalLM:
    """A 2-layer Qwen2 (q/k/v projections with bias) in fp32 with eager attention, in eval mode."""
    torch.manual_seed(seed)
    config = Qwen2Config(**SIZES, tie_word_embeddings=False, attn_implementation="eager")
    return Qwen2ForCausalLM(config).float().eval()


MODELS: dict[str, Callable[..., PreTrainedModel]] = {"llama": tiny_llama, "qwen2": tiny_qwen2}


def layer_paths(names: list[str], layers: tuple[int, ...] = (0, 1)) -> list[str]:
    """Full paths of the named projections of a tiny model, in model order."""
    group = {name: "self_attn" if name in ATTENTION else "mlp" for name in ATTENTION + MLP}
    order = ATTENTION + MLP
    return [f"model.layers.{i}.{group[n]}.{n}" for i in layers for n in sorted(names, key=order.index)]


def token_ids(seed: int = 0, batch: int = 2, length: int = 8) -> torch.Tensor:
    """A (batch, length) tensor of random token ids."""
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(seed))


def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The model's logits for ``ids`` in eval mode, without grad."""
    model.eval()
    with torch.no_grad():
        out = model(ids)
    return out.logits if hasattr(out, "logits") else out


def perturb_adapters(model: nn.Module, seed: int = 1) -> None:
    """Give every LoRA B a random value and scale every DoRA magnitude, so an adapter changes the outputs.

    Works on automodel.peft and peft models alike (it goes by parameter names).
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in sorted(model.named_parameters()):
            if "lora_B" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
            elif "lora_magnitude_vector" in name:
                parameter.mul_(0.5 + torch.rand(parameter.shape, generator=generator))


def lm_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of a causal LM on ``ids``."""
    return model(input_ids=ids, labels=ids).loss


def train(model: nn.Module, loss_fn: Callable[[], torch.Tensor], steps: int = 5, lr: float = 1e-2) -> list[float]:
    """Run ``steps`` AdamW steps on the trainable parameters; return the loss before each step."""
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = loss_fn()
        losses.append(loss.item())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return losses


def tiny_sequential(seed: int = 0) -> nn.Sequential:
    """A plain torch model, no transformers: embedding, two (Linear, GELU, Linear) blocks, a vocabulary head.

    Module paths: ``0`` (embedding), ``1.0``, ``1.2``, ``2.0``, ``2.2`` (block Linears), ``3`` (head).
    """
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Embedding(VOCAB, 16),
        nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16)),
        nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16)),
        nn.Linear(16, VOCAB),
    ).eval()


def sequential_loss(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """Next-token cross-entropy of a model that maps ids to logits."""
    out = model(ids[:, :-1])
    return nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), ids[:, 1:].reshape(-1))
