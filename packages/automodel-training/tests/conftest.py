"""Shared fixtures: a tiny real Llama and a tiny real tokenizer, built offline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))

from training_test_helpers import tiny_llama, tiny_tokenizer


@pytest.fixture
def model():
    """A freshly initialised tiny LlamaForCausalLM (fp32, sdpa, seed 0)."""
    return tiny_llama()


@pytest.fixture(scope="session")
def tokenizer():
    """A word-level tokenizer over lowercase letters, digits and a few words."""
    return tiny_tokenizer()


@pytest.fixture(scope="session", autouse=True)
def trackio_dir(tmp_path_factory):
    """The session's own trackio data folder (trackio reads ``TRACKIO_DIR`` once, when a test first imports it)."""
    with pytest.MonkeyPatch.context() as patch:
        folder = tmp_path_factory.mktemp("trackio")
        patch.setenv("TRACKIO_DIR", str(folder))
        yield folder
