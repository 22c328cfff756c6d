"""What every bench script measures and writes the same way: process memory and the results CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import torch


def status_mib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{field} is not in /proc/self/status")


def reset_peak(device: torch.device) -> float:
    """Start a new peak-memory measurement on ``device``; return the memory held now in MiB.

    On the CPU the peak resident size (VmHWM) is reset to the current one through /proc/self/clear_refs.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device) / 2**20
    Path("/proc/self/clear_refs").write_text("5")
    return status_mib("VmRSS")


def peak_mib(device: torch.device) -> float:
    """This process's peak memory in MiB since ``reset_peak`` (VmHWM on the CPU, max allocated on CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) / 2**20
    return status_mib("VmHWM")


def write_csv(path: Path, rows: list[dict]) -> None:
    """Write ``rows`` (dicts with the same keys) to the CSV file ``path`` and say where it went."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {path}")
