"""Hatchling build hook: ship the repository's examples/ in the sdist and the wheel.

The examples live at the repository root (../../examples), where the README's commands use
them. The sdist carries them as ``examples/``; the wheel carries them as
``automodel/examples/files``, taken from ``examples/`` when built from an unpacked sdist and
from ``../../examples`` when built from the repository.
"""

from __future__ import annotations

from pathlib import Path

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

TARGET_FOLDER = {"sdist": "examples", "wheel": "automodel/examples/files"}


class CustomBuildHook(BuildHookInterface):
    """Adds the examples folder to the sdist or wheel being built."""

    def initialize(self, version: str, build_data: dict) -> None:
        """Force-include the examples under the folder ``TARGET_FOLDER`` names for this target."""
        if self.target_name not in TARGET_FOLDER or version == "editable":
            return
        root = Path(self.root)
        unpacked = root / "examples"
        source = unpacked if unpacked.is_dir() else root.parent.parent / "examples"
        if not source.is_dir():
            raise FileNotFoundError(f"automodel-examples: no examples folder at {unpacked} or {source}")
        build_data["force_include"][str(source)] = TARGET_FOLDER[self.target_name]
