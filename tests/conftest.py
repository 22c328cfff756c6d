"""Cross-package tests: the whole workspace is installed; tools/ is importable."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "tests"))  # helper modules such as slurm_cluster
os.environ.setdefault("HF_HUB_OFFLINE", "1")
