"""Loss curves: the PNG a finished run leaves in its folder, and one PNG overlaying several runs."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from automodel.training import (
    LOSS_CURVES,
    FinetuneLoop,
    JsonlWriter,
    MetricsSample,
    ProgressReporter,
    TrainingError,
    plot_runs,
    runs_figure,
)

BLUE, ORANGE = (31, 119, 180), (255, 127, 14)  # matplotlib's first two colours: the first and second run


def write_run(run_dir: Path, steps: int = 6, scale: float = 1.0) -> Path:
    """A run folder as a recipe leaves it: a MetricsSample per step, a validation record every 3 steps."""
    training = JsonlWriter(run_dir / "training.jsonl")
    validation = JsonlWriter(run_dir / "validation.jsonl")
    for step in range(1, steps + 1):
        sample = MetricsSample(step, 0, scale / step, 0.5, 1e-3 * step, 1.2, 900.0 + step, mfu=0.3)
        training.write(sample.to_dict())
        if step % 3 == 0:
            validation.write({"step": step, "val_loss": 1.1 * scale / step, "val_ppl": 3.0 / step, "val_tokens": 64})
    return run_dir


def colours(path: Path) -> set[tuple[int, int, int]]:
    return {colour for _, colour in Image.open(path).convert("RGB").getcolors(maxcolors=1 << 20)}


def test_one_run_is_a_png_with_a_panel_per_metric(tmp_path):
    run = write_run(tmp_path / "run")
    written = plot_runs([run], tmp_path / "curves.png")
    assert written == tmp_path / "curves.png"
    with Image.open(written) as image:
        assert image.format == "PNG"
        # loss, learning rate, grad_norm, mem, tps, mfu, val_ppl: 7 panels of 500 x 320 px, 3 to a row
        assert image.size == (1500, 960)
        image.verify()
    assert BLUE in colours(written) and ORANGE not in colours(written)
    assert not list(tmp_path.glob(".*.partial"))


def test_the_panels_hold_the_logged_values(tmp_path):
    run = write_run(tmp_path / "run")
    figure = runs_figure([run])
    titles = [ax.get_title() for ax in figure.axes if ax.get_visible()]
    assert titles == [
        "loss",
        "learning rate",
        "gradient norm",
        "peak memory (GiB)",
        "throughput (tps)",
        "model FLOPs utilization",
        "val_ppl",
    ]
    train, validation = figure.axes[0].lines
    assert list(train.get_xdata()) == [1, 2, 3, 4, 5, 6]
    assert list(train.get_ydata()) == pytest.approx([1 / s for s in range(1, 7)])
    assert (list(validation.get_xdata()), validation.get_linestyle()) == ([3, 6], "--")
    assert [t.get_text() for t in figure.axes[0].get_legend().get_texts()] == ["train", "validation"]


def test_values_spanning_two_decades_get_a_log_scale(tmp_path):
    short, long = runs_figure([write_run(tmp_path / "short")]), runs_figure([write_run(tmp_path / "long", steps=200)])
    assert short.axes[0].get_yscale() == "linear"  # loss from 1 to 1/6
    assert [ax.get_yscale() for ax in long.axes[:3]] == ["log", "log", "linear"]  # loss and lr span 200x


def test_two_runs_are_overlaid_with_a_legend_naming_each(tmp_path):
    first, second = write_run(tmp_path / "base"), write_run(tmp_path / "lora", steps=9, scale=0.5)
    figure = runs_figure([first, second], labels=["base", "lora"])
    loss, lr = figure.axes[:2]
    legend = [t.get_text() for t in loss.get_legend().get_texts()]
    assert legend == ["base train", "base validation", "lora train", "lora validation"]
    assert [t.get_text() for t in lr.get_legend().get_texts()] == ["base", "lora"]
    assert [len(line.get_xdata()) for line in loss.lines] == [6, 2, 9, 3]
    written = plot_runs([first, second], tmp_path / "both.png")
    assert {BLUE, ORANGE} <= colours(written)


def test_folder_names_are_the_default_labels_and_paths_when_they_repeat(tmp_path):
    first, second = write_run(tmp_path / "a" / "run"), write_run(tmp_path / "b" / "run")
    legend = [t.get_text() for t in runs_figure([first, second]).axes[1].get_legend().get_texts()]
    assert legend == [str(first), str(second)]


def test_an_unfinished_last_line_is_left_out(tmp_path):
    # `automodel plot` may read a run that is writing its next line.
    run = write_run(tmp_path / "run", steps=4)
    with (run / "training.jsonl").open("a") as handle:
        handle.write('{"step": 5, "loss": 0.')
    assert list(runs_figure([run]).axes[0].lines[0].get_xdata()) == [1, 2, 3, 4]


def test_a_folder_without_training_jsonl_is_an_error_naming_it(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TrainingError, match=r"empty holds no training\.jsonl") as error:
        plot_runs([write_run(tmp_path / "run"), tmp_path / "empty"], tmp_path / "out.png")
    assert error.value.user_error and str(tmp_path / "empty") in str(error.value)
    assert not (tmp_path / "out.png").exists()


def test_bad_lines_labels_and_output_names_are_errors(tmp_path):
    run = write_run(tmp_path / "run")
    with pytest.raises(TrainingError, match=r"2 label\(s\) for 1 run folder"):
        plot_runs([run], tmp_path / "out.png", labels=["a", "b"])
    with pytest.raises(TrainingError, match=r"name the output file \*\.png"):
        plot_runs([run], tmp_path / "out.jpg")
    lines = (run / "validation.jsonl").read_text().splitlines()
    (run / "validation.jsonl").write_text(f"{lines[0]}\nnot json\n{lines[1]}\n")
    with pytest.raises(TrainingError, match=r"validation.jsonl, line 2 is not JSON"):
        plot_runs([run], tmp_path / "out.png")


class EndedRun(FinetuneLoop):
    """What ``_farewell`` reads of a finished run: its folder, rank and progress reporter."""

    def __init__(self, run_dir: Path, rank0: bool = True):
        self.checkpoint = SimpleNamespace(dir=run_dir)
        self.parallel = SimpleNamespace(is_rank0=rank0)
        self.stream = io.StringIO()
        self.progress = ProgressReporter(6, bar=False, stream=self.stream)


def test_a_finished_run_leaves_its_loss_curves_and_says_where(tmp_path):
    run = EndedRun(write_run(tmp_path))
    run._farewell(tmp_path / "step_000006")
    assert run.stream.getvalue() == f"loss curves written to {tmp_path / LOSS_CURVES}\n"
    with Image.open(tmp_path / "loss_curves.png") as image:
        assert (image.format, image.size) == ("PNG", (1500, 960))


def test_a_failed_plot_is_one_message_and_not_the_runs_failure(tmp_path):
    (tmp_path / "training.jsonl").write_text('{"step": 1, "loss": 2.0}\n{"step": 2,\n{"step": 3, "loss": 1.0}\n')
    run = EndedRun(tmp_path)
    run._farewell(None)
    message = run.stream.getvalue()
    assert message.startswith("loss curves not written: TrainingError:") and "line 2" in message
    assert message.count("\n") == 1 and not (tmp_path / LOSS_CURVES).exists()


def test_only_rank_0_plots_and_only_a_run_that_logged(tmp_path):
    other_rank = EndedRun(write_run(tmp_path / "run"), rank0=False)
    other_rank._farewell(None)
    nothing_logged = EndedRun(tmp_path / "no_logs")
    nothing_logged._farewell(None)
    assert not (tmp_path / "run" / LOSS_CURVES).exists() and not (tmp_path / "no_logs").exists()
    assert other_rank.stream.getvalue() == nothing_logged.stream.getvalue() == ""
