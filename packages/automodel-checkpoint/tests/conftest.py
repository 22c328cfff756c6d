"""Shared setup: an offline hub and the tests folder on sys.path for the helper module and scripts."""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Tests run with --import-mode=importlib, which does not put this folder on sys.path.
TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)


@pytest.fixture(scope="session")
def forkserver() -> multiprocessing.context.ForkServerContext:
    """A multiprocessing context whose processes fork from a server that has imported torch and this package.

    Every new Python process would otherwise spend seconds importing torch (and torch._dynamo,
    which the first optimizer imports); the kill and multi-process tests start several.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(
        ["torch", "torch._dynamo", "torchdata.stateful_dataloader", "automodel.checkpoint", "checkpoint_test_helpers"]
    )
    return context
