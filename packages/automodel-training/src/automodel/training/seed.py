"""Seeding every random number generator a run uses."""

from __future__ import annotations

import os
import random

import torch


def set_seed(seed: int, rank: int = 0, deterministic: bool = False) -> int:
    """Seed python, numpy (when installed) and torch (CPU and CUDA) with ``seed + rank``; return that seed.

    ``deterministic=True`` also asks torch for deterministic kernels (slower, some ops refuse).
    """
    value = int(seed) + int(rank)
    random.seed(value)
    os.environ.setdefault("PYTHONHASHSEED", str(value))
    try:
        import numpy as np
    except ImportError:
        pass
    else:
        np.random.seed(value % 2**32)
    torch.manual_seed(value)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return value
