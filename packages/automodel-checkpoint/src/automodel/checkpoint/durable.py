"""Files that survive a crash and that the user's group can read: fsync of files and folders, umask modes."""

from __future__ import annotations

import os
import re
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Flush ``path``'s folder entries (files created, renamed or removed in it) to the disk."""
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(root: Path) -> None:
    """Flush the entries of ``root`` and of every folder below it, deepest first."""
    for folder, _, _ in os.walk(root, topdown=False):
        fsync_dir(Path(folder))


def write_text_durably(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` and flush it to the disk before returning; creates the parent folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())


def umask() -> int:
    """Return the process's umask without changing it (read from /proc; elsewhere set and restored at once)."""
    try:
        status = Path("/proc/self/status").read_text(encoding="ascii")
    except OSError:
        status = ""
    match = re.search(r"^Umask:\s*([0-7]+)$", status, re.MULTILINE)
    if match:
        return int(match.group(1), 8)
    current = os.umask(0o022)
    os.umask(current)
    return current


def new_file_mode() -> int:
    """The permission bits ``open(path, "w")`` gives a new file: 0o666 less the umask (0o644 under umask 022)."""
    return 0o666 & ~umask()
