"""Fixtures: a tiny offline task, its tokenizer and configs for train_ft."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from recipe_test_helpers import write_task


@pytest.fixture(scope="session")
def task(tmp_path_factory) -> Path:
    """A folder with train.jsonl, validation.jsonl, corpus.jsonl and tokenizer/ (built once)."""
    return write_task(tmp_path_factory.mktemp("task"))
