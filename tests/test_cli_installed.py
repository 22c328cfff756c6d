"""The `automodel` command of the fully installed workspace starts and lists what is installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

AUTOMODEL = str(Path(sys.executable).parent / "automodel")


def test_automodel_help_runs():
    result = subprocess.run([AUTOMODEL, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Usage: automodel" in result.stdout


def test_automodel_routes_runs():
    result = subprocess.run([AUTOMODEL, "routes"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
