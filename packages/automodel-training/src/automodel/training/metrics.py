"""Per-step metrics: MetricsSample, JSONL files, peak memory, measured peak TFLOP/s and MFU."""

from __future__ import annotations

import json
import math
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch


@dataclass
class MetricsSample:
    """One logged training step (one line of ``training.jsonl``).

    Attributes: step, epoch, loss (mean per label token), grad_norm, lr, mem (peak GiB:
    CUDA allocated, or process RSS on CPU), tps (real tokens per second over all ranks),
    mfu (model FLOPs utilization, 0..1, None when unknown), timestamp (seconds since epoch).
    """

    step: int
    epoch: int
    loss: float
    grad_norm: float
    lr: float
    mem: float
    tps: float
    mfu: float | None = None
    timestamp: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        """Return the sample as a plain dict (JSON-ready)."""
        return asdict(self)


class JsonlWriter:
    """Appends one JSON object per line to a file, flushing each line (safe to read while training)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, record: dict[str, Any]) -> None:
        """Append ``record`` as one JSON line."""
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, allow_nan=True) + "\n")


def peak_memory_gib(device: torch.device | str = "cpu") -> float:
    """Return the peak memory so far in GiB: CUDA max allocated on a GPU, max RSS of this process on CPU."""
    if torch.device(device).type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**30 if sys.platform == "darwin" else rss / 2**20


def measure_peak_tflops(
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    size: int | None = None,
    seconds: float = 0.5,
) -> float:
    """Measure the dense matmul TFLOP/s of ``dtype`` on ``device``: the best of a short run of square GEMMs.

    Args:
        dtype: the compute dtype (bf16 on a GPU run, fp32 on CPU).
        device: where to measure.
        size: the GEMM side; None picks 8192 on CUDA (smaller GEMMs on a large GPU measure kernel
            launches, not the tensor cores) and 1024 on CPU.
        seconds: how long to keep measuring after one warm-up product.

    Returns:
        The best rate seen, in TFLOP/s. The operands come from a generator of their own: the global
        RNG (restored from a checkpoint just before, on resume) is left as it was.
    """
    device = torch.device(device)
    size = size or (8192 if device.type == "cuda" else 1024)
    generator = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    b = torch.randn(size, size, device=device, dtype=dtype, generator=generator)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.matmul(a, b)
    sync()
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for _ in range(4):
            torch.matmul(a, b)
        sync()
        elapsed = time.perf_counter() - start
        best = max(best, 4 * 2 * size**3 / elapsed / 1e12)
    return best


def model_flops_utilization(
    tokens_per_second: float, flops_per_token: float | None, peak_tflops: float | None
) -> float | None:
    """Return achieved FLOP/s over peak FLOP/s (0..1), or None when either number is unknown."""
    if not flops_per_token or not peak_tflops or not math.isfinite(tokens_per_second):
        return None
    return tokens_per_second * flops_per_token / (peak_tflops * 1e12)


METRIC_FILES = ("training.jsonl", "validation.jsonl", "generations.jsonl")


def truncate_history(run_dir: Path, last_step: int, files: tuple[str, ...] = METRIC_FILES) -> None:
    """Drop the JSONL records of steps after ``last_step`` from the run's metric ``files`` (steps a
    resumed run will redo); ``-1`` empties them, for a restart before the first checkpoint."""
    for name in files:
        path = Path(run_dir) / name
        if not path.is_file():
            continue
        lines = path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= last_step]
        path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
