"""``automodel push STEP REPO_ID``: a saved model to the Hugging Face Hub."""

from __future__ import annotations

from pathlib import Path

import typer

from automodel.cli.tools import load_tool

StepArgument = typer.Argument(
    ..., help="A step folder (its model/ is uploaded) or a model folder (model/, merged/).", show_default=False
)
RepoArgument = typer.Argument(..., help="The Hub model repo, user/name or org/name.", show_default=False)
PublicOption = typer.Option(False, "--public", help="Create the repo public (default: private) if it is new.")
RevisionOption = typer.Option(None, "--revision", help="The branch to commit to (default main).", show_default=False)
MessageOption = typer.Option(None, "-m", "--message", help="The commit message.", show_default=False)


def push_command(
    step: Path = StepArgument,
    repo_id: str = RepoArgument,
    public: bool = PublicOption,
    revision: str | None = RevisionOption,
    message: str | None = MessageOption,
) -> None:
    """Upload a saved model to the Hub (token: HF_TOKEN or `hf auth login`; the resume state stays here)."""
    push_to_hub = load_tool("push")
    url = push_to_hub(step, repo_id, private=not public, revision=revision, commit_message=message)
    typer.echo(f"pushed to {url}")
