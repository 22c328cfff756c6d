"""A step folder's ``manifest.json``: every file's size and xxh3_128 checksum, written at save, checked at load.

Each rank hashes (and flushes to the disk) the files it wrote: rank R wrote
``optim/__R_*.distcp`` and ``<folder>/rankR.json``, rank 0 everything else. Rank 0 writes
the manifest last, before the rename that publishes the step. At load the files are split
over the ranks by position in the manifest, so a large checkpoint is checked in parallel.
"""

from __future__ import annotations

import json
import mmap
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import xxhash

from automodel.checkpoint import layout
from automodel.checkpoint.durable import write_text_durably
from automodel.checkpoint.errors import CheckpointError

MANIFEST = "manifest.json"
HASH = "xxh3_128"
VERIFY_MODES = ("full", "size", "off")
_FORMAT = "automodel-checkpoint-manifest/1"
_RANK_FILE = re.compile(r"[^/]+/rank(\d+)\.json")
_DCP_FILE = re.compile(r"optim/__(\d+)_\d+\.distcp")
_WINDOW = 64 * 2**20  # a multiple of mmap.ALLOCATIONGRANULARITY


def parse_verify(value: str) -> str:
    """Return a ``verify`` setting checked to be ``full``, ``size`` or ``off``.

    Raises:
        CheckpointError: any other value, naming the three.
    """
    if value in VERIFY_MODES:
        return value
    raise CheckpointError(
        f"verify is {value!r}; use full (check every file's checksum), size (check file sizes only, for huge "
        "checkpoints) or off"
    )


def step_files(step_dir: Path) -> list[str]:
    """Return the paths, relative to ``step_dir`` and with ``/``, of every file below it but the manifest, sorted."""
    found = []
    for folder, _, files in os.walk(step_dir):
        for name in files:
            relative = (Path(folder) / name).relative_to(step_dir).as_posix()
            if relative != MANIFEST:
                found.append(relative)
    return sorted(found)


def writer_rank(relative: str, world_size: int) -> int:
    """Return the rank that wrote ``relative`` in a save by ``world_size`` processes (see the module docstring)."""
    match = _DCP_FILE.fullmatch(relative) or _RANK_FILE.fullmatch(relative)
    if match and int(match.group(1)) < world_size:
        return int(match.group(1))
    return 0


def file_digest(descriptor: int, size: int) -> str:
    """Return the xxh3_128 checksum (32 hex digits) of the ``size`` bytes of an open file.

    The file is mapped 64 MiB at a time: no copy, and the process's resident memory (which
    counts mapped pages, and which schedulers watch) grows by one window, not by the file.
    """
    digest = xxhash.xxh3_128()
    try:
        for offset in range(0, size, _WINDOW):
            with mmap.mmap(descriptor, min(_WINDOW, size - offset), access=mmap.ACCESS_READ, offset=offset) as window:
                digest.update(window)
    except (OSError, ValueError):  # a file system without mmap: read it
        digest.reset()
        os.lseek(descriptor, 0, os.SEEK_SET)
        while chunk := os.read(descriptor, _WINDOW):
            digest.update(chunk)
    return digest.hexdigest()


def seal(step_dir: Path, relatives: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Checksum each file and flush it to the disk; return ``{relative: {"size": bytes, "xxh3_128": hex}}``."""
    entries = {}
    for relative in relatives:
        descriptor = os.open(step_dir / relative, os.O_RDONLY)
        try:
            size = os.fstat(descriptor).st_size
            entries[relative] = {"size": size, HASH: file_digest(descriptor, size)}
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
    return entries


def write_manifest(step_dir: Path, entries: Mapping[str, Mapping[str, Any]]) -> None:
    """Write ``step_dir/manifest.json`` listing ``entries`` (from ``seal``) and flush it to the disk."""
    record = {"format": _FORMAT, "hash": HASH, "files": dict(sorted(entries.items()))}
    write_text_durably(step_dir / MANIFEST, json.dumps(record, indent=1) + "\n")


def check_step(step_dir: Path, mode: str, rank: int, world_size: int) -> list[str] | None:
    """Compare this rank's share of a step folder with its manifest; return the problems found.

    Rank 0 also looks for files the manifest does not list where load reads them: ``optim/``
    and the ``rank*.json`` files (files added to ``model/`` or beside it are not read on resume).

    Args:
        step_dir: a complete step folder.
        mode: ``full`` compares sizes and checksums, ``size`` sizes only.
        rank, world_size: this process's share is every ``world_size``-th file from ``rank``.

    Returns:
        One sentence per problem, naming the file (empty when all is well), or None when the
        folder has no manifest (saved before automodel-checkpoint 0.4).
    """
    path = step_dir / MANIFEST
    if not path.exists():
        return None
    try:
        files = _read_manifest(path)
    except CheckpointError as error:
        return [str(error)]
    problems = []
    if rank == 0:
        unlisted = [r for r in step_files(step_dir) if r not in files and _read_on_load(r)]
        problems += [f"{step_dir / r} is not listed in {MANIFEST}" for r in unlisted]
    for relative in sorted(files)[rank::world_size]:
        problems += _check_file(step_dir, relative, files[relative], mode)
    return problems


def corrupted_error(step_dir: Path, problems: list[str]) -> CheckpointError:
    """The error for a step whose files do not match its manifest: the problems, then the other complete steps."""
    shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    others = [p.name for p in layout.complete_steps(step_dir.parent) if p.name != step_dir.name]
    if others:
        names = ", ".join(others)
        what_to_do = f"restore from another step: set restore_from.path to one of {names} in {step_dir.parent}"
    else:
        what_to_do = f"{step_dir.parent} holds no other complete step: restore it from a copy, or start afresh"
    return CheckpointError(f"checkpoint {step_dir} is corrupted ({shown}); {what_to_do}")


def _read_on_load(relative: str) -> bool:
    return relative.startswith(f"{layout.RESUME_DIR}/") or _RANK_FILE.fullmatch(relative) is not None


def _read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        files = record["files"]
        well_formed = record.get("hash") == HASH and isinstance(files, dict)
        well_formed = well_formed and all(_well_formed(relative, entry) for relative, entry in files.items())
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path} cannot be read as a checkpoint manifest ({exc})") from None
    if not well_formed:
        raise CheckpointError(f"{path} is not a manifest this package writes")
    return files


def _well_formed(relative: Any, entry: Any) -> bool:
    """A relative path that stays in the step folder, with an int size and a hex checksum."""
    if not isinstance(relative, str) or not isinstance(entry, dict):
        return False
    parts = PurePosixPath(relative).parts
    inside = bool(parts) and not relative.startswith("/") and ".." not in parts
    return inside and type(entry.get("size")) is int and isinstance(entry.get(HASH), str)


def _check_file(step_dir: Path, relative: str, entry: Mapping[str, Any], mode: str) -> list[str]:
    path = step_dir / relative
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return [f"{path} is missing"]
    except OSError as exc:
        return [f"{path} cannot be read ({exc.strerror})"]
    try:
        size = os.fstat(descriptor).st_size
        if size != entry["size"]:
            return [f"{path} has {size} bytes where {MANIFEST} records {entry['size']} (truncated or rewritten)"]
        if mode == "full" and file_digest(descriptor, size) != entry[HASH]:
            return [f"{path} does not match its {HASH} checksum in {MANIFEST}"]
        return []
    except OSError as exc:
        return [f"{path} cannot be read ({exc.strerror})"]
    finally:
        os.close(descriptor)
