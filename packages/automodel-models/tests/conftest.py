"""Shared fixtures: an offline hub, the helper module on sys.path, a tokenizer and a tiny VLM built once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# Nothing may reach a model hub: set before transformers (and huggingface_hub) are imported.
os.environ["HF_HUB_OFFLINE"] = "1"

# Tests run with --import-mode=importlib, which does not put this folder on sys.path.
TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

from models_test_helpers import CORPUS  # noqa: E402

from automodel.models import build_tiny_vlm, build_tokenizer  # noqa: E402


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding a tokenizer trained by build_tokenizer on the helper corpus (vocab 300)."""
    path = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(CORPUS, path, vocab_size=300)
    return path


@pytest.fixture(scope="session")
def tiny_vlm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the tiny Llava and its processor written by build_tiny_vlm (seed 0); do not change it."""
    return build_tiny_vlm(tmp_path_factory.mktemp("tiny-vlm"))
