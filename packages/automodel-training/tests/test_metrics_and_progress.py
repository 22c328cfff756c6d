"""Metrics records, JSONL files, measured peak, MFU, and the progress reporter."""

from __future__ import annotations

import io
import json

import pytest
import torch

from automodel.training import (
    JsonlWriter,
    MetricsSample,
    ProgressReporter,
    measure_peak_tflops,
    model_flops_utilization,
    peak_memory_gib,
    truncate_history,
)


def test_metrics_sample_has_the_fields_of_training_jsonl():
    record = MetricsSample(step=3, epoch=0, loss=1.5, grad_norm=0.7, lr=1e-3, mem=0.2, tps=1000.0, mfu=0.1).to_dict()
    assert {"step", "epoch", "loss", "grad_norm", "lr", "mem", "tps", "mfu", "timestamp"} <= set(record)


def test_jsonl_writer_appends_one_json_object_per_line(tmp_path):
    writer = JsonlWriter(tmp_path / "run" / "training.jsonl")
    writer.write({"step": 1, "loss": 2.0})
    writer.write({"step": 2, "loss": 1.0})
    lines = (tmp_path / "run" / "training.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]


def test_measured_peak_and_mfu():
    peak = measure_peak_tflops(size=256, seconds=0.1)
    assert 0 < peak < 100
    assert model_flops_utilization(1000.0, 2e9, 4.0) == pytest.approx(0.5)
    assert model_flops_utilization(1000.0, None, 4.0) is None


def test_measuring_the_peak_leaves_the_global_rng_as_it_was():
    # A resumed run restores the RNG and then measures: a draw here would shift every dropout mask after.
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)
    measure_peak_tflops(size=64, seconds=0.01)
    assert torch.equal(torch.rand(4), expected)


def test_peak_memory_is_reported_in_gib():
    assert 0.01 < peak_memory_gib() < 64


def test_progress_without_a_terminal_prints_one_line_per_update():
    stream = io.StringIO()
    progress = ProgressReporter(total_steps=10, stream=stream)
    progress.update(5, {"loss": 1.23456, "lr": 0.001, "mfu": None})
    progress.close()
    assert stream.getvalue().strip() == "step 5/10 loss=1.235 lr=0.001"


def test_progress_bar_shows_values_and_disabled_ranks_print_nothing():
    stream = io.StringIO()
    progress = ProgressReporter(total_steps=10, bar=True, stream=stream)
    progress.update(4, {"loss": 2.5})
    progress.close()
    assert "4/10" in stream.getvalue() and "loss=2.5" in stream.getvalue()
    quiet = io.StringIO()
    ProgressReporter(total_steps=10, enabled=False, stream=quiet).update(1, {"loss": 1.0})
    assert quiet.getvalue() == ""


def test_truncate_history_keeps_the_steps_up_to_the_resumed_one(tmp_path) -> None:
    (tmp_path / "training.jsonl").write_text("".join(json.dumps({"step": s}) + "\n" for s in (1, 2, 3, 4)))
    truncate_history(tmp_path, 2)
    assert [json.loads(line)["step"] for line in (tmp_path / "training.jsonl").read_text().splitlines()] == [1, 2]
    truncate_history(tmp_path, -1)
    assert (tmp_path / "training.jsonl").read_text() == ""
