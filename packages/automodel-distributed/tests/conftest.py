"""Shared setup: an offline hub, importable worker modules, the ``gpu`` marker, one-process meshes."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh

from automodel.distributed.config import MeshSizes
from automodel.distributed.mesh import build_device_mesh

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Tests run with --import-mode=importlib, which does not put this folder on sys.path; the
# rank worker modules (mesh_workers, ...) must import by name in the forked ranks too.
TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``gpu`` marker of the tests that need CUDA."""
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU; skipped where CUDA is absent")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip every ``gpu``-marked test when no CUDA device is visible."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@contextlib.contextmanager
def _one_process_mesh(device_type: str) -> Iterator[DeviceMesh]:
    if device_type == "cuda":
        torch.cuda.set_device(0)
    backend = "nccl" if device_type == "cuda" else "gloo"
    device_id = torch.device("cuda", 0) if device_type == "cuda" else None
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1, device_id=device_id)
    try:
        yield build_device_mesh(MeshSizes(1, 1, 1, 1), device_type)
    finally:
        dist.destroy_process_group()


@pytest.fixture
def cpu_mesh() -> Iterator[DeviceMesh]:
    """The all-ones device mesh of a one-process gloo group in this process."""
    with _one_process_mesh("cpu") as mesh:
        yield mesh


@pytest.fixture
def cuda_mesh() -> Iterator[DeviceMesh]:
    """The all-ones device mesh of a one-process NCCL group on GPU 0 in this process."""
    with _one_process_mesh("cuda") as mesh:
        yield mesh
