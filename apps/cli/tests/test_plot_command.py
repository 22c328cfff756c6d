"""`automodel plot RUN_DIR... -o out.png`: the `plot` tool of an installed package (automodel-training), run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import assert_one_paragraph_error

from automodel.cli.tools import find_tool

needs_the_tool = pytest.mark.skipif(find_tool("plot") is None, reason="no installed package provides `plot`")


def write_run(run_dir: Path, steps: int) -> Path:
    """A run folder as a recipe leaves it: training.jsonl and validation.jsonl, one JSON object a line."""
    run_dir.mkdir(parents=True)
    lines = [
        {"step": s, "epoch": 0, "loss": 2 / s, "grad_norm": 0.5, "lr": 1e-3, "mem": 1.0, "tps": 900.0, "mfu": None}
        for s in range(1, steps + 1)
    ]
    (run_dir / "training.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (run_dir / "validation.jsonl").write_text(json.dumps({"step": steps, "val_loss": 1.0, "val_tokens": 8}) + "\n")
    return run_dir


@needs_the_tool
def test_plot_writes_one_png_overlaying_the_runs(cli, tmp_path):
    image = pytest.importorskip("PIL.Image")
    first, second = write_run(tmp_path / "base", 4), write_run(tmp_path / "lora", 6)
    out = tmp_path / "plots" / "both.png"
    result = cli("plot", first, second, "--label", "base", "--label", "lora", "-o", out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"loss curves written to {out}"
    with image.open(out) as png:
        # loss, learning rate, gradient norm, memory, throughput: one row of three, then two
        assert (png.format, png.size) == ("PNG", (1500, 640))
    colours = {colour for _, colour in image.open(out).convert("RGB").getcolors(maxcolors=1 << 20)}
    assert {(31, 119, 180), (255, 127, 14)} <= colours  # one colour per run


@needs_the_tool
def test_plot_of_a_folder_without_training_jsonl_is_one_paragraph_naming_it(cli, tmp_path):
    (tmp_path / "not_a_run").mkdir()
    result = cli("plot", tmp_path / "not_a_run", "-o", tmp_path / "out.png")
    assert_one_paragraph_error(result, f"{tmp_path / 'not_a_run'} holds no training.jsonl")
    assert not (tmp_path / "out.png").exists()


@needs_the_tool
def test_plot_with_a_label_per_run_missing_is_one_paragraph(cli, tmp_path):
    run = write_run(tmp_path / "run", 3)
    assert_one_paragraph_error(cli("plot", run, run, "--label", "one"), "1 label(s) for 2 run folder(s)")


def test_plot_without_a_run_folder_is_one_paragraph(cli):
    assert_one_paragraph_error(cli("plot"), "Missing argument 'RUN_DIR...'")


@pytest.mark.skipif(find_tool("plot") is not None, reason="a package provides `plot` here")
def test_plot_without_a_package_providing_it_says_what_to_install(cli, tmp_path):
    assert_one_paragraph_error(
        cli("plot", write_run(tmp_path / "run", 2)), "no installed package provides", "pip install automodel-training"
    )
