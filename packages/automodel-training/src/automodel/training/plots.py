"""Loss curves: one PNG of the metric history of one run folder, or of several overlaid.

A run folder is a run's ``checkpoint.dir``: ``training.jsonl`` holds one record per logged step
(``MetricsSample`` plus a recipe's extra fields), ``validation.jsonl`` one per validation. Every
numeric field gets a panel against ``step``: training and validation loss share the first, the
learning rate has the second, then the other training fields (``grad_norm``, ``tps``, ``mem``,
``mfu``, extras) and the other validation fields (``val_ppl``, ``exact_match``, ...).

matplotlib is imported by these functions only, and draws with its Agg canvas (no display, no
pyplot state), so importing automodel.training stays light.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from automodel.training.errors import TrainingError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LOSS_CURVES = "loss_curves.png"
"""The file name a finished run's curves are written to, in its ``checkpoint.dir``."""
# Each panel is 500 x 320 pixels, three panels to a row.
COLUMNS = 3
PANEL_INCHES = (5.0, 3.2)
DPI = 100
LOG_SPAN = 100  # a panel of positive values spanning this factor or more gets a log scale
NOT_PLOTTED = frozenset({"step", "epoch", "timestamp", "val_tokens", "val_samples"})
TITLES = {
    "loss": "loss",
    "lr": "learning rate",
    "grad_norm": "gradient norm",
    "tps": "throughput (tps)",
    "mem": "peak memory (GiB)",
    "mfu": "model FLOPs utilization",
}


@dataclass(frozen=True)
class RunHistory:
    """The records of one run folder's ``training.jsonl`` and ``validation.jsonl``, and its legend label."""

    label: str
    training: list[dict[str, Any]]
    validation: list[dict[str, Any]]


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a metrics file; an unfinished last line (a run still writing it) is left out."""
    lines = path.read_text(encoding="utf-8").split("\n")
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break
            raise TrainingError(
                f"{path}, line {number} is not JSON ({exc.msg}); each line of a metrics file is one JSON object "
                "written by the run: remove or repair that line"
            ) from None
        if isinstance(record, dict):
            records.append(record)
    return records


def read_run(run_dir: str | Path, label: str | None = None) -> RunHistory:
    """Read a run folder's ``training.jsonl`` and, when there is one, its ``validation.jsonl``.

    Raises:
        TrainingError: the folder has no ``training.jsonl`` (naming the folder), the file holds no
            record yet, or a line of either file is not JSON.
    """
    run_dir = Path(run_dir)
    training_file = run_dir / "training.jsonl"
    if not training_file.is_file():
        raise TrainingError(
            f"{run_dir} holds no training.jsonl, so there is nothing to plot; give the run folder "
            "(the run's checkpoint.dir, where training.jsonl and validation.jsonl are written)"
        )
    training = _read_jsonl(training_file)
    if not training:
        raise TrainingError(f"{training_file} holds no record yet; plot the run once it has logged a step")
    validation_file = run_dir / "validation.jsonl"
    validation = _read_jsonl(validation_file) if validation_file.is_file() else []
    return RunHistory(label or run_dir.name or str(run_dir), training, validation)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def _series(records: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """``(steps, values)`` of the records holding a number at ``key`` (non-finite values stay, as gaps)."""
    points = [(_number(r.get("step")), _number(r.get(key))) for r in records]
    kept = [(step, value) for step, value in points if step is not None and value is not None]
    return [step for step, _ in kept], [value for _, value in kept]


def _numeric_keys(histories: Sequence[RunHistory], source: str) -> list[str]:
    """The fields holding a number in some record of ``source`` (training or validation), first seen first."""
    keys: dict[str, None] = {}
    for history in histories:
        for record in getattr(history, source):
            keys.update((key, None) for key, value in record.items() if _number(value) is not None)
    return [key for key in keys if key not in NOT_PLOTTED]


def _panels(histories: Sequence[RunHistory]) -> list[tuple[str, list[tuple[str, str]]]]:
    """``[(title, [(source, key), ...]), ...]``: loss and val_loss, lr, then every other numeric field."""
    training = [key for key in _numeric_keys(histories, "training") if key not in ("loss", "lr")]
    validation = [key for key in _numeric_keys(histories, "validation") if key != "val_loss"]
    panels = [("loss", [("training", "loss"), ("validation", "val_loss")]), ("learning rate", [("training", "lr")])]
    panels += [(TITLES.get(key, key), [("training", key)]) for key in training]
    panels += [(key, [("validation", key)]) for key in validation]
    return panels


def _labels(run_dirs: Sequence[Path], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(run_dirs):
            raise TrainingError(
                f"{len(labels)} label(s) for {len(run_dirs)} run folder(s); give one label per run folder, in order"
            )
        return [str(label) for label in labels]
    names = [path.name or str(path) for path in run_dirs]
    return names if len(set(names)) == len(names) else [str(path) for path in run_dirs]


def runs_figure(run_dirs: Sequence[str | Path], *, labels: Sequence[str] | None = None) -> Figure:
    """Return the matplotlib Figure of ``plot_runs``: one panel per metric, one colour per run.

    Training series are solid lines, validation series dashed with a marker at each validation; a
    panel of positive values spanning two decades or more (a loss from 5 to 0.001) has a log scale.
    The loss panel's legend names each line (``train``/``validation``, prefixed by the run's label
    when there are several runs); the other panels have a legend of run labels when there are
    several runs. ``labels`` default to the folders' names (their paths when two names are equal).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not run_dirs:
        raise TrainingError("no run folder given; give at least one run folder holding training.jsonl")
    paths = [Path(path) for path in run_dirs]
    histories = [read_run(path, label) for path, label in zip(paths, _labels(paths, labels), strict=True)]
    panels = _panels(histories)
    rows = math.ceil(len(panels) / COLUMNS)
    figure = Figure(figsize=(PANEL_INCHES[0] * COLUMNS, PANEL_INCHES[1] * rows), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(rows, COLUMNS, squeeze=False).flat)
    several = len(histories) > 1
    for ax, (title, lines) in zip(axes, panels, strict=False):
        for index, history in enumerate(histories):
            for source, key in lines:
                steps, values = _series(getattr(history, source), key)
                if not steps:
                    continue
                style = {"linestyle": "--", "marker": "o", "markersize": 3} if source == "validation" else {}
                name = {"training": "train", "validation": "validation"}[source] if title == "loss" else ""
                label = f"{history.label} {name}".strip() if several else (name or history.label)
                ax.plot(steps, values, color=f"C{index % 10}", label=label, **style)
        ax.set_title(title)
        ax.set_xlabel("step")
        plotted = [v for line in ax.lines for v in line.get_ydata() if math.isfinite(v)]
        if plotted and min(plotted) > 0 and max(plotted) >= LOG_SPAN * min(plotted):
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        if ax.lines and (several or title == "loss"):
            ax.legend(fontsize="small")
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if not several:
        figure.suptitle(histories[0].label)
    return figure


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path, *, labels: Sequence[str] | None = None) -> Path:
    """Write the metric history of one or several run folders as one PNG; return its path.

    Args:
        run_dirs: run folders (each a run's ``checkpoint.dir``) holding ``training.jsonl`` and,
            optionally, ``validation.jsonl``; several are overlaid, one colour per run.
        out: the PNG to write (``*.png``; its folder is created). It is written under a temporary
            name and renamed, so a reader never sees half a file.
        labels: one legend label per run folder (default: the folders' names).

    Raises:
        TrainingError: a folder without ``training.jsonl`` (naming it), a metrics line that is not
            JSON, a label count that does not match, or ``out`` not ending in ``.png``.
    """
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise TrainingError(f"the loss curves are a PNG image; name the output file *.png, not {out}")
    figure = runs_figure(run_dirs, labels=labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    figure.savefig(partial, format="png")
    partial.replace(out)
    return out
