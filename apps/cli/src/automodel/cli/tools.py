"""Tools that installed packages lend the CLI's own commands, found in the ``automodel.tools`` entry-point group.

``automodel plot`` calls the ``plot`` tool, ``plot(run_dirs, out, *, labels=None) -> Path``, which
automodel-training registers (its ``plot_runs``); ``automodel push`` the ``push`` tool,
``push(path, repo_id, *, private, revision, commit_message) -> commit URL``, which automodel-checkpoint
registers (its ``push_to_hub``). As for recipes, the CLI reads the group without
importing anything, and imports a tool only when its command runs.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points

from automodel.cli.errors import CliError

GROUP = "automodel.tools"
PROVIDERS = {
    "plot": "automodel-training",
    "push": "automodel-checkpoint",
}  # the CLI command needing a tool -> the package that provides it


def find_tool(name: str) -> EntryPoint | None:
    """Return the installed entry point of the tool ``name``, or None when no package provides it."""
    return next(iter(entry_points(group=GROUP, name=name)), None)


def offered(command: str) -> bool:
    """Whether ``automodel --help`` and shell completion offer ``command``: its tool is installed, if it needs one."""
    return command not in PROVIDERS or find_tool(command) is not None


def load_tool(name: str) -> Callable:
    """Import the tool ``name``; a CliError saying which package to install when none provides it."""
    entry_point = find_tool(name)
    if entry_point is None:
        provider = PROVIDERS.get(name, "a package providing it")
        raise CliError(
            f"`automodel {name}` needs the `{name}` tool, which no installed package provides; "
            f"install {provider} (pip install {provider}) into this environment"
        )
    try:
        return entry_point.load()
    except (ImportError, AttributeError) as exc:
        raise CliError(f"the `{name}` tool points at `{entry_point.value}`, which fails to import: {exc}") from None
