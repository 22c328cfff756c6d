"""``automodel plot RUN_DIR... [-o out.png]``: the loss curves of one or several runs in one PNG."""

from __future__ import annotations

from pathlib import Path

import typer

from automodel.cli.tools import load_tool

RunDirsArgument = typer.Argument(
    ...,
    metavar="RUN_DIR...",
    help="Run folders (a run's checkpoint.dir, holding training.jsonl); several are overlaid.",
    show_default=False,
)
OutputOption = typer.Option(Path("loss_curves.png"), "-o", "--output", help="The PNG to write.")
LabelOption = typer.Option(
    None,
    "--label",
    help="A legend label per run folder, in order (repeatable); default: the folders' names.",
    show_default=False,
)


def plot_command(
    run_dirs: list[Path] = RunDirsArgument, output: Path = OutputOption, label: list[str] | None = LabelOption
) -> None:
    """Plot the training and validation loss, learning rate and other metrics of runs into one PNG."""
    plot_runs = load_tool("plot")
    written = plot_runs(run_dirs, output, labels=label)
    typer.echo(f"loss curves written to {written}")
