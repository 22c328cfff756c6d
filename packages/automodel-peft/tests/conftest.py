"""Shared setup: an offline hub, and the helper module importable under --import-mode=importlib."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Tests run with --import-mode=importlib, which does not put this folder on sys.path.
TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)


def pytest_configure(config: pytest.Config) -> None:
    """Register the `gpu` marker of the tests that need CUDA (skipped where it is absent)."""
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped where CUDA is absent")
