"""`automodel benchmark llm` on the tiny example: one table on stdout, every number in the JSON, no checkpoint."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_tiny_benchmark_prints_the_table_and_writes_the_json(tmp_path):
    automodel = str(Path(sys.executable).parent / "automodel")
    command = [automodel, "benchmark", "llm", "-c", "examples/llm_benchmark/tiny.yaml"]
    result = subprocess.run(
        [*command, "--+checkpoint.dir", str(tmp_path), "--benchmark.steps", "4"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for row in ("step time", "tokens/s", "TFLOP/s", "MFU", "peak memory"):
        assert row in result.stdout
    assert "measured: float32 matmul on cpu" in result.stdout
    results = json.loads((tmp_path / "benchmark.json").read_text())
    assert [p.name for p in tmp_path.iterdir()] == ["benchmark.json"]
    assert f"wrote {tmp_path / 'benchmark.json'}" in result.stdout
    assert results["steps"] == 4 and results["seq_length"] == 128 and results["tokens_per_step"] == 8 * 128
    assert results["tokens_per_s"] > 0 and 0 < results["mfu"] < 1


def test_a_bad_benchmark_key_is_one_paragraph_naming_it(tmp_path):
    automodel = str(Path(sys.executable).parent / "automodel")
    result = subprocess.run(
        [automodel, "benchmark", "llm", "-c", "examples/llm_benchmark/tiny.yaml", "--benchmark.steps", "0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 2
    assert "`benchmark.steps`: must be a positive integer" in result.stderr
    assert "Traceback" not in result.stderr
