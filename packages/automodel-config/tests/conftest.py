"""Shared fixtures: an offline hub, an importable helper module, a clean allow-list, YAML files on disk."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Tests run with --import-mode=importlib, which does not put this folder on sys.path.
TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)

TARGETS = "config_test_targets"


@pytest.fixture(autouse=True)
def _no_allowlist_from_the_outer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUTOMODEL_TARGET_ALLOWLIST", raising=False)


@pytest.fixture
def allow_test_targets(monkeypatch: pytest.MonkeyPatch) -> str:
    """Allow `_target_: config_test_targets.*` through the environment variable."""
    monkeypatch.setenv("AUTOMODEL_TARGET_ALLOWLIST", TARGETS)
    return TARGETS


@pytest.fixture
def write_yaml(tmp_path: Path) -> Callable[..., Path]:
    """Write dedented YAML text to a file under tmp_path and return its path."""

    def write(text: str, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write
