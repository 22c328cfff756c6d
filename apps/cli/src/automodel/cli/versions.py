"""``automodel --version``: the name and version of every installed automodel distribution."""

from __future__ import annotations

from importlib.metadata import distributions

import typer

PREFIX = "automodel-"


def automodel_distributions() -> list[tuple[str, str]]:
    """Return ``(name, version)`` of every installed distribution whose name starts with ``automodel-``, sorted."""
    found: dict[str, str] = {}
    for dist in distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if name.startswith(PREFIX):
            found.setdefault(name, dist.version)  # the first on sys.path is the one imported
    return sorted(found.items())


def show_versions(value: bool) -> None:
    """``--version`` callback: print one ``name version`` line per automodel distribution, then exit 0."""
    if not value:
        return
    for name, version in automodel_distributions():
        typer.echo(f"{name} {version}")
    raise typer.Exit()
