"""Cross-entropy at a large vocabulary: peak memory and time of the naive loss vs automodel's chunked loss.

The naive loss is what a Hugging Face model does by default: project every position to
the vocabulary (``hidden @ W.T``), upcast the logits to fp32 and call ``F.cross_entropy``;
the logits and their gradient are whole ``[tokens, vocab]`` tensors. automodel's
``ChunkedCrossEntropy`` projects ``chunk_size`` label positions at a time inside a
checkpoint, so no full logits tensor ever exists. Each variant runs forward + backward
once in a fresh process (after one warm-up pass), from the same hidden states and weight.
Prints one table and writes bench/results/loss_memory.csv.

    python bench/loss_memory.py                    # 128k vocab, 4096 tokens, hidden 2048 (fp32, CPU: ~3 min)
    python bench/loss_memory.py --device cuda --dtype bfloat16

Memory is the peak above what the process held before the pass: resident memory (VmHWM,
reset through /proc/self/clear_refs) on the CPU, torch.cuda.max_memory_allocated on CUDA.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _measure import peak_mib, reset_peak, write_csv

RESULTS = Path(__file__).parent / "results" / "loss_memory.csv"
VARIANTS = ("naive", "chunked-4096", "chunked-1024", "chunked-256")


def _loss(variant: str, hidden: torch.Tensor, weight: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    if variant == "naive":
        logits = F.linear(hidden, weight).float()
        return F.cross_entropy(logits, labels, reduction="sum") / labels.numel()
    from automodel.training import ChunkedCrossEntropy

    chunked = ChunkedCrossEntropy(chunk_size=int(variant.split("-")[1]))
    return chunked(hidden[None], weight, labels[None])


def measure(variant: str, tokens: int, hidden_size: int, vocab: int, dtype: str, device: str) -> dict:
    """Run ``variant`` forward + backward (after a warm-up); return its loss, seconds and peak extra MiB."""
    torch.manual_seed(0)
    where, kind = torch.device(device), getattr(torch, dtype)
    hidden = (torch.randn(tokens, hidden_size, device=where) * 0.5).to(kind).requires_grad_()
    weight = (torch.randn(vocab, hidden_size, device=where) * 0.02).to(kind).requires_grad_()
    labels = torch.randint(0, vocab, (tokens,), device=where)
    _loss(variant, hidden, weight, labels).backward()
    hidden.grad = weight.grad = None
    baseline = reset_peak(where)
    started = time.perf_counter()
    loss = _loss(variant, hidden, weight, labels)
    loss.backward()
    if where.type == "cuda":
        torch.cuda.synchronize(where)
    seconds = time.perf_counter() - started
    return {
        "variant": variant,
        "loss": float(loss.detach()),
        "seconds": seconds,
        "peak_mib": peak_mib(where) - baseline,
    }


def main() -> None:
    """Measure every variant in its own process, print the table with ratios to naive, and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=2048)
    parser.add_argument("--vocab", type=int, default=128 * 1024)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    context = multiprocessing.get_context("spawn")
    rows = []
    for variant in VARIANTS:
        with context.Pool(1) as pool:
            rows.append(pool.apply(measure, (variant, args.tokens, args.hidden, args.vocab, args.dtype, args.device)))
    naive = rows[0]
    for row in rows:
        row["memory_ratio"] = row["peak_mib"] / naive["peak_mib"]
        row["time_ratio"] = row["seconds"] / naive["seconds"]
    print(
        f"cross-entropy, {args.tokens} tokens x hidden {args.hidden} -> vocab {args.vocab}, {args.dtype}, {args.device}"
    )
    print(f"{'variant':<14}{'loss':>10}{'seconds':>10}{'peak MiB':>11}{'memory ratio':>14}{'time ratio':>12}")
    for row in rows:
        print(
            f"{row['variant']:<14}{row['loss']:>10.4f}{row['seconds']:>10.2f}{row['peak_mib']:>11.0f}"
            f"{row['memory_ratio']:>14.2f}{row['time_ratio']:>12.2f}"
        )
    write_csv(RESULTS, rows)


if __name__ == "__main__":
    main()
