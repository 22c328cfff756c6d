"""``automodel example list`` and ``automodel example copy NAME [DEST]``: the shipped example configs and data."""

from __future__ import annotations

from pathlib import Path

import typer

example_app = typer.Typer(help="List the example configs, or copy one with its data to run it.", no_args_is_help=True)

NameArgument = typer.Argument(..., help="An example: tiny_sft, or llm_finetune/tiny_sft.", show_default=False)
DestArgument = typer.Argument(Path("."), help="Where to copy it; it lands in DEST/examples/.")


@example_app.command("list")
def list_command() -> None:
    """List the examples: name, what it does, and the command that runs it."""
    from automodel.examples import list_examples

    for example in list_examples():
        typer.echo(f"{example.name}\n    {example.summary}")
        if example.command:
            typer.echo(f"    {example.command}")


@example_app.command("copy")
def copy_command(name: str = NameArgument, dest: Path = DestArgument) -> None:
    """Copy an example config and the data its values name, so its command runs from DEST."""
    from automodel.examples import copy_example, find_example

    config = copy_example(name, dest)
    command = find_example(name).command
    typer.echo(f"copied {config}")
    if command:
        typer.echo(f"run it from {dest}: {command}")
