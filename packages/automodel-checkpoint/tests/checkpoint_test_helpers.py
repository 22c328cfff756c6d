"""A small real training run (MLP with dropout, AdamW, cosine LambdaLR, StatefulDataLoader) and a tiny Llama.

Imported by the tests and by the scripts they run in subprocesses; it imports no
transformers at module level, so a subprocess that only trains starts faster.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset, DistributedSampler
from torchdata.stateful_dataloader import StatefulDataLoader

TOTAL_STEPS = 40


class NoisyRegression(Dataset):
    """40 fixed (x, y) pairs; each read adds noise from Python's ``random``, so its RNG state matters too."""

    def __init__(self, size: int = 40) -> None:
        generator = torch.Generator().manual_seed(1234)
        self.x = torch.randn(size, 8, generator=generator)
        self.y = self.x.sum(1, keepdim=True).sin()

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[index] + 0.01 * random.gauss(0.0, 1.0), self.y[index]


class TinyNet(torch.nn.Module):
    """Linear-Tanh-Dropout-Linear; ``ballast`` adds a persistent buffer of that many floats to make saves slow."""

    def __init__(self, ballast: int = 0) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(8, 32)
        self.drop = torch.nn.Dropout(0.3)
        self.out = torch.nn.Linear(32, 1)
        if ballast:
            self.register_buffer("ballast", torch.zeros(ballast))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.drop(torch.tanh(self.inp(x))))


@dataclass
class Run:
    """Everything a training run holds; ``step`` and ``epoch`` go to train_state.json."""

    model: TinyNet
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LambdaLR
    loader: StatefulDataLoader
    sampler: DistributedSampler
    step: int = 0
    epoch: int = 0

    def stateful(self) -> dict[str, Any]:
        """The objects a checkpoint saves beside model and optimizer."""
        return {"lr_scheduler": self.lr_scheduler, "dataloader": self.loader}


def cosine(step: int) -> float:
    """Cosine decay from 1 to 0 over TOTAL_STEPS."""
    return 0.5 * (1 + math.cos(math.pi * min(step, TOTAL_STEPS) / TOTAL_STEPS))


def build_run(
    seed: int = 0,
    *,
    rank: int = 0,
    world_size: int = 1,
    ballast: int = 0,
    shard: Callable[[torch.nn.Module], None] | None = None,
) -> Run:
    """A fresh run: model initialised from ``seed`` (then ``shard`` applied), data shuffled per epoch, dropout on."""
    torch.manual_seed(seed)
    random.seed(seed)
    model = TinyNet(ballast)
    if shard is not None:
        shard(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine)
    dataset = NoisyRegression()
    sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=7)
    # Its own generator: creating the loader's iterator after a resume must not draw from the global RNG.
    loader = StatefulDataLoader(dataset, batch_size=4, sampler=sampler, generator=torch.Generator().manual_seed(0))
    return Run(model, optimizer, lr_scheduler, loader, sampler)


def train(run: Run, until_step: int, after_step: Callable[[Run, float], bool] | None = None) -> list[float]:
    """Train until ``run.step == until_step`` (or ``after_step`` returns True); return each step's loss."""
    losses: list[float] = []
    while run.step < until_step:
        run.sampler.set_epoch(run.epoch)
        for x, y in run.loader:
            loss = torch.nn.functional.mse_loss(run.model(x), y)
            loss.backward()
            run.optimizer.step()
            run.optimizer.zero_grad()
            run.lr_scheduler.step()
            run.step += 1
            losses.append(loss.item())
            if (after_step is not None and after_step(run, losses[-1])) or run.step >= until_step:
                return losses
        run.epoch += 1
    return losses


def tiny_llama(tie_word_embeddings: bool = False, seed: int = 0) -> Any:
    """A 2-layer LlamaForCausalLM with hidden size 32, fp32, eager attention (deterministic logits)."""
    from transformers import LlamaConfig, LlamaForCausalLM  # only the tests that need it pay for the import

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=96,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=tie_word_embeddings,
        attn_implementation="eager",
    )
    return LlamaForCausalLM(config).eval()


def flip_bytes(path: Path, count: int = 1) -> None:
    """Invert ``count`` bytes (all of a shorter file) in the middle of ``path``, keeping its size."""
    data = bytearray(path.read_bytes())
    count = min(count, len(data))
    start = (len(data) - count) // 2
    for index in range(start, start + count):
        data[index] ^= 0xFF
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    """Cut ``path`` to half its size, as a copy or a disk that stopped halfway would."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def reseal(step_dir: Path) -> None:
    """Rewrite a step's manifest.json to match its files as they are now: a foreign or tampered checkpoint
    whose manifest agrees with it, so only the readers themselves stand between it and the run."""
    from automodel.checkpoint.manifest import seal, step_files, write_manifest

    write_manifest(step_dir, seal(step_dir, step_files(step_dir)))


def hold_run_dir(folder: str, ready: Any) -> None:
    """Take the run-folder lock (in a forked process), set ``ready``, and keep it until killed."""
    from automodel.checkpoint import lock_run_dir

    lock_run_dir(folder)
    ready.set()
    time.sleep(600)
