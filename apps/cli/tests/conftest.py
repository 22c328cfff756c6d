"""Fixtures for driving the real `automodel` command in a subprocess."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from cli_helpers import AUTOMODEL, clean_env, run_in_process


@pytest.fixture(autouse=True)
def _no_permissions_from_the_outer_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without `_target_` allowances or remote-code trust from the environment they run in."""
    monkeypatch.delenv("AUTOMODEL_TARGET_ALLOWLIST", raising=False)
    monkeypatch.delenv("AUTOMODEL_TRUST_REMOTE_CODE", raising=False)


@pytest.fixture
def automodel():
    """Run ``automodel ARGS`` and return the CompletedProcess (text, captured)."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run(
            [AUTOMODEL, *map(str, args)], capture_output=True, text=True, env=env or clean_env(), timeout=timeout
        )

    return run


@pytest.fixture
def cli(capsys):
    """Run ``automodel ARGS`` in this process and return a CompletedProcess with its status and output."""
    return lambda *args: run_in_process(capsys, *args)


@pytest.fixture
def write_config(tmp_path: Path):
    """Write a dict (or raw text) as a YAML file under tmp_path and return its path."""

    def write(content: dict | str, name: str = "cfg.yaml") -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content, sort_keys=False))
        return path

    return write
