"""Shared fixtures: an offline hub, an importable helper module, the small test tokenizer."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
# datasets caches what it reads from local files; keep that out of the user's cache.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="automodel-data-tests-")

# Tests run with --import-mode=importlib, which does not put this folder on sys.path.
TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from data_test_helpers import build_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer():
    """The ChatML byte-level BPE tokenizer of data_test_helpers, built once."""
    return build_tokenizer()
