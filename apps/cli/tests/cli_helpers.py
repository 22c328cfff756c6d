"""Shared helpers of the CLI tests (importable because conftest puts this folder on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

AUTOMODEL = str(Path(sys.executable).parent / "automodel")
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT")


def clean_env(**extra: str) -> dict[str, str]:
    """The test process environment without launcher variables, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARS}
    env.update(extra)
    return env


def run_in_process(capsys, *args: object) -> subprocess.CompletedProcess:
    """Run ``automodel ARGS`` in this process (``automodel.cli.app.main``); return its status and captured output."""
    from automodel.cli.app import main

    capsys.readouterr()
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(["automodel", *map(str, args)], code, out, err)


def assert_one_paragraph_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit 2, no traceback, stderr is one paragraph starting with `automodel: error:` holding every fragment."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    err = result.stderr.strip()
    assert "Traceback" not in result.stderr, result.stderr
    assert err.startswith("automodel: error:"), err
    assert "\n\n" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
