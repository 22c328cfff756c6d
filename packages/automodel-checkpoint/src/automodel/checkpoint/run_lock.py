"""One run per checkpoint folder: an exclusive ``flock`` on ``<dir>/.lock`` that names its holder.

The kernel releases a flock when the last descriptor of it closes, so the lock of a process
that died (even by SIGKILL) is free at once and never needs cleaning up. A process forked
while the lock is held (a DataLoader worker) shares it until it exits too. Within one process
the lock is re-entrant: taking it again on the same folder counts, and the folder is
released when every holder has released it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from automodel.checkpoint.errors import CheckpointError

LOCK_FILE = ".lock"
ORPHAN_GRACE_SECONDS = 10.0  # how long a lock left to a dead holder's children is waited for


@dataclass
class _Hold:
    """The open lock file of a folder this process holds, how many holds share it, and the pid that opened it."""

    descriptor: int
    count: int
    pid: int


_held: dict[Path, _Hold] = {}
_held_guard = threading.Lock()


class RunDirLock:
    """This process's hold on a run folder (from ``lock_run_dir``); ``release()`` or a ``with`` block ends it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._released = False

    def release(self) -> None:
        """Give up this hold; the file lock goes when the process's last hold on the folder does. Idempotent."""
        if self._released:
            return
        self._released = True
        with _held_guard:
            hold = _held.get(self.folder)
            if hold is None or hold.pid != os.getpid():  # a forked child never releases its parent's lock
                return
            hold.count -= 1
            if hold.count == 0:
                del _held[self.folder]
                os.close(hold.descriptor)

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def lock_run_dir(dir: str | os.PathLike[str]) -> RunDirLock:
    """Take the exclusive lock on a run folder (creating it), or fail at once when another process holds it.

    The lock file records the holder's pid, host and start time for the error another run gets.

    Args:
        dir: the run's checkpoint folder.

    Returns:
        The hold, to ``release()`` when the run ends (the kernel releases it if the process dies first).

    Raises:
        CheckpointError: another process holds the folder (naming it), or the folder cannot be
            created or written.
    """
    folder = Path(dir).absolute()
    with _held_guard:
        hold = _held.get(folder)
        if hold is not None and hold.pid == os.getpid():
            hold.count += 1
            return RunDirLock(folder)
        descriptor = _open_lock_file(folder)
        try:
            _take(descriptor, folder)
            holder = {"pid": os.getpid(), "host": socket.gethostname(), "since": _now()}
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, (json.dumps(holder) + "\n").encode(), 0)
        except BaseException:
            os.close(descriptor)
            raise
        _held[folder] = _Hold(descriptor, 1, os.getpid())
        return RunDirLock(folder)


def _open_lock_file(folder: Path) -> int:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o666)
    except (FileExistsError, NotADirectoryError):
        raise CheckpointError(
            f"checkpoint dir {folder} is a file (or lies under one); set checkpoint.dir to a folder"
        ) from None
    except OSError as exc:
        raise CheckpointError(
            f"cannot create {folder / LOCK_FILE} ({exc.strerror}): the checkpoint dir must be writable; "
            "fix its permissions or set checkpoint.dir to another folder"
        ) from None


def _take(descriptor: int, folder: Path) -> None:
    """flock the file; wait up to ORPHAN_GRACE_SECONDS while the recorded holder is a dead process of this host."""
    deadline = time.monotonic() + ORPHAN_GRACE_SECONDS
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = _holder(descriptor)
            orphaned = holder.get("host") == socket.gethostname() and not _alive(holder.get("pid"))
            if not orphaned or time.monotonic() > deadline:
                raise _in_use(folder, holder, orphaned) from None
            time.sleep(0.1)


def _holder(descriptor: int) -> dict:
    try:
        holder = json.loads(os.pread(descriptor, 4096, 0).decode())
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}


def _alive(pid: object) -> bool:
    if type(pid) is not int or pid <= 0:
        return True  # unknown: assume a live holder
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


def _in_use(folder: Path, holder: dict, orphaned: bool) -> CheckpointError:
    who = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} since {holder.get('since', '?')}"
    if not holder:
        who = f"a process that has not yet written its name into {folder / LOCK_FILE}"
    if orphaned:
        who += " (that process has ended, but a process it started still holds the lock)"
    return CheckpointError(
        f"{folder} is in use by another run: {who}; wait for it to end or use another checkpoint.dir"
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
