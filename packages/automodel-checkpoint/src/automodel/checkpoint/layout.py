"""The checkpoint folder on disk: step folders, their temporary names, the ``latest`` pointer, retention.

A step is written as ``.step_000500.partial-<tag>`` and renamed to ``step_000500`` when
complete; ``latest`` (a text file naming the step folder) is replaced after the rename, and
the folder's entries are flushed to the disk after each.
Folders are deleted by first renaming them to a ``.partial`` name, so a process killed
while deleting never leaves a half-deleted folder under a complete name.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from automodel.checkpoint.durable import fsync_dir, write_text_durably
from automodel.checkpoint.errors import CheckpointError

LATEST = "latest"
TRAIN_STATE = "train_state.json"
MODEL_DIR = "model"
RESUME_DIR = "optim"
RNG_DIR = "rng"
_STEP_NAME = re.compile(r"step_(\d+)")


def step_dir_name(step: int) -> str:
    """Return ``step_000500`` for step 500."""
    return f"step_{step:06d}"


def partial_dir(root: Path, step: int, tag: str) -> Path:
    """Return where step ``step`` is written before it is complete: ``root/.step_000500.partial-<tag>``."""
    return root / f".{step_dir_name(step)}.partial-{tag}"


def rank_file(step_dir: Path, folder: str, rank: int) -> Path:
    """Return ``step_dir/folder/rank{rank}.json``, where per-rank state (RNG, data loader, ...) lives."""
    return step_dir / folder / f"rank{rank}.json"


def step_number(path: Path) -> int | None:
    """Return 500 for a folder named ``step_000500``, None for any other name."""
    match = _STEP_NAME.fullmatch(path.name)
    return int(match.group(1)) if match else None


def is_complete(path: Path) -> bool:
    """True for a step folder that a save finished: a ``step_N`` name, ``train_state.json`` and DCP metadata."""
    return (
        _STEP_NAME.fullmatch(path.name) is not None
        and (path / TRAIN_STATE).is_file()
        and (path / RESUME_DIR / ".metadata").is_file()
    )


def complete_steps(root: Path) -> list[Path]:
    """Return the complete step folders under ``root``, oldest step first."""
    if not root.is_dir():
        return []
    try:
        found = [p for p in root.iterdir() if p.is_dir() and is_complete(p)]
    except OSError as exc:
        raise CheckpointError(f"cannot list {root} ({exc.strerror}); make the checkpoint folder readable") from None
    return sorted(found, key=step_number)


def steps_after(root: Path, step_dir: Path | None) -> list[Path]:
    """Return the complete steps under ``root`` newer than ``step_dir``: all of them when ``step_dir`` is None
    or lies outside ``root``, oldest first."""
    steps = complete_steps(root)
    start = None if step_dir is None or step_dir.parent.resolve() != root.resolve() else step_number(step_dir)
    return steps if start is None else [p for p in steps if step_number(p) > start]


def read_latest(root: Path) -> Path | None:
    """Return the step folder ``root/latest`` names, or None when there is no ``latest`` file."""
    pointer = root / LATEST
    if not pointer.is_file():
        return None
    try:
        return root / pointer.read_text(encoding="utf-8").strip()
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"{pointer} cannot be read ({exc}); it should hold the name of a step folder: write the name of a "
            "complete step into it, or delete it and restore_from a step folder"
        ) from None


def write_latest(root: Path, step_dir: Path, tag: str) -> None:
    """Point ``root/latest`` at ``step_dir`` atomically (write a temporary file, then rename over), durably."""
    temporary = root / f".{LATEST}.partial-{tag}"
    write_text_durably(temporary, step_dir.name + "\n")
    os.replace(temporary, root / LATEST)
    fsync_dir(root)


def remove_latest(root: Path) -> None:
    """Delete ``root/latest`` (there is then no step to resume from), durably."""
    (root / LATEST).unlink(missing_ok=True)
    fsync_dir(root)


def remove_partials(root: Path) -> None:
    """Delete what interrupted saves and deletions left: ``root/.step_*.partial-*``, ``root/.latest.partial-*``."""
    for leftover in [*root.glob(".step_*.partial-*"), *root.glob(f".{LATEST}.partial-*")]:
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


def move_aside(step_dir: Path, tag: str) -> Path:
    """Rename a step folder to a ``.partial`` name (deleted by the next save if this process dies); return it."""
    aside = step_dir.with_name(f".{step_dir.name}.partial-old-{tag}")
    step_dir.rename(aside)
    return aside


def discard(step_dir: Path, tag: str) -> None:
    """Delete a step folder, moving it aside first so that it is never seen half deleted under its name."""
    shutil.rmtree(move_aside(step_dir, tag))


def apply_retention(root: Path, keep_last_n: int, tag: str) -> None:
    """Delete all but the ``keep_last_n`` newest complete steps, never the one ``latest`` names."""
    latest = read_latest(root)
    steps = complete_steps(root)
    for old in steps[: max(len(steps) - keep_last_n, 0)]:
        if latest is None or old.name != latest.name:
            discard(old, tag)
