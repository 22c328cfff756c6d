"""For the release tests: a local pypiserver (a real PyPI-compatible index on a free loopback port) and the
git settings a release from a throwaway clone needs."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

# git for a release from a throwaway clone: no user or system config, an identity to tag with.
GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Release Test",
    "GIT_AUTHOR_EMAIL": "release-test@example.invalid",
    "GIT_COMMITTER_NAME": "Release Test",
    "GIT_COMMITTER_EMAIL": "release-test@example.invalid",
}

# What a release reads from the environment to find its index and credentials: each test gives its own.
RELEASE_SETTINGS = ("AUTOMODEL_RELEASE_", "UV_PUBLISH_")


def release_env(**extra: str) -> dict[str, str]:
    """This process's environment without any release index or upload credentials, with ``GIT_ENV``
    and ``extra`` on top: what a release from a throwaway clone runs with."""
    kept = {k: v for k, v in os.environ.items() if not k.startswith(RELEASE_SETTINGS)}
    return {**kept, **GIT_ENV, **extra}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(url: str, server: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert server.poll() is None, "pypi-server exited"
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"pypi-server did not answer at {url}")


@contextlib.contextmanager
def local_index(packages: Path) -> Iterator[str]:
    """Serve ``packages`` with pypiserver (the dev group's) on loopback; yield the upload URL.

    Uploads need no password (``-a . -P .``) and a name the index lacks is not looked up on
    pypi.org (``--disable-fallback``). Installs read ``<url>simple/``.
    """
    packages.mkdir(parents=True, exist_ok=True)
    executable = shutil.which("pypi-server", path=str(Path(sys.executable).parent))
    assert executable, "pypiserver is not installed: it is in the workspace's dev group"
    port = _free_port()
    command = [executable, "run", "-i", "127.0.0.1", "-p", str(port), "-a", ".", "-P", ".", "--disable-fallback"]
    server = subprocess.Popen([*command, str(packages)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_until_up(url, server)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)
