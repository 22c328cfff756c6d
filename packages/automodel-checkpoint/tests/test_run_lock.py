"""One run per checkpoint folder: the flock on <dir>/.lock, who holds it, and when it goes."""

from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import threading
from multiprocessing.context import ForkServerContext
from pathlib import Path

import pytest
from checkpoint_test_helpers import hold_run_dir

from automodel.checkpoint import CheckpointError, CheckpointSettings, build_checkpointer, lock_run_dir


def _free(folder: Path) -> bool:
    """Whether another open file description could flock the folder now (as another process would)."""
    descriptor = os.open(folder / ".lock", os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(descriptor)


def test_a_second_process_is_refused_naming_the_holder_until_it_dies(tmp_path, forkserver: ForkServerContext) -> None:
    ready = forkserver.Event()
    holder = forkserver.Process(target=hold_run_dir, args=(str(tmp_path), ready))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(CheckpointError) as error:
            lock_run_dir(tmp_path)
        message = str(error.value)
        assert message.startswith(f"{tmp_path} is in use by another run: pid {holder.pid} on host ")
        assert message.endswith("; wait for it to end or use another checkpoint.dir")
        record = json.loads((tmp_path / ".lock").read_text())
        assert (record["pid"], record["host"]) == (holder.pid, socket.gethostname()) and "since" in record
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # no clean-up runs: the kernel releases the flock
        holder.join()
    with lock_run_dir(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()


def test_the_lock_is_reentrant_within_a_process_and_released_by_the_last_holder(tmp_path) -> None:
    first = lock_run_dir(tmp_path / "run")
    second = lock_run_dir(tmp_path / "run")
    assert not _free(tmp_path / "run")
    first.release()
    first.release()  # idempotent: does not give up the second hold
    assert not _free(tmp_path / "run")
    second.release()
    assert _free(tmp_path / "run")


def test_build_checkpointer_holds_the_lock_until_close(tmp_path) -> None:
    checkpointer = build_checkpointer(CheckpointSettings.from_options({"dir": str(tmp_path / "run")}))
    assert not _free(tmp_path / "run")
    checkpointer.close()
    assert _free(tmp_path / "run")


def test_a_lock_left_to_a_dead_holders_children_is_waited_for(tmp_path, monkeypatch) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    orphan = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)  # stands for a DataLoader worker of a dead run
    fcntl.flock(orphan, fcntl.LOCK_EX)
    os.write(orphan, json.dumps({"pid": 2**22 + 1, "host": socket.gethostname(), "since": "then"}).encode())
    monkeypatch.setattr("automodel.checkpoint.run_lock.ORPHAN_GRACE_SECONDS", 0.3)
    with pytest.raises(CheckpointError, match="that process has ended, but a process it started still holds"):
        lock_run_dir(folder)
    monkeypatch.setattr("automodel.checkpoint.run_lock.ORPHAN_GRACE_SECONDS", 30.0)
    threading.Timer(0.3, os.close, args=(orphan,)).start()  # the worker notices and exits
    lock_run_dir(folder).release()


def test_a_folder_that_is_a_file_is_refused(tmp_path) -> None:
    (tmp_path / "file").write_text("")
    for where in (tmp_path / "file", tmp_path / "file" / "run"):
        with pytest.raises(CheckpointError, match=f"checkpoint dir {where} is a file"):
            build_checkpointer(CheckpointSettings.from_options({"dir": str(where)}))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_refused(tmp_path) -> None:
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    with pytest.raises(CheckpointError, match=f"cannot create {read_only / '.lock'} .*must be writable"):
        lock_run_dir(read_only)
