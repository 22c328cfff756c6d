"""Reading torch.distributed.checkpoint folders without running arbitrary pickle.

DCP stores its ``.metadata`` with pickle and loads non-tensor values (optimizer
hyperparameters) with ``torch.load(weights_only=False)``. A checkpoint may come from
someone else, so both are first read by unpicklers that accept only what DCP writes.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch.distributed.checkpoint import DefaultLoadPlanner, FileSystemReader
from torch.distributed.checkpoint.metadata import Metadata

from automodel.checkpoint.errors import CheckpointError, brief

_ALLOWED = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "TensorProperties",
        "MetadataIndex",
        "StorageMeta",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "torch": {"Size"},
    "pathlib": {"Path", "PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _MetadataUnpickler(pickle.Unpickler):
    """Builds only DCP's metadata classes, torch dtypes and sizes, and paths."""

    def find_class(self, module: str, name: str) -> Any:
        is_dtype = module == "torch" and isinstance(getattr(torch, name, None), torch.dtype)
        if is_dtype or name in _ALLOWED.get(module, ()):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not part of a DCP metadata file")


class SafeFileSystemReader(FileSystemReader):
    """A ``FileSystemReader`` whose ``.metadata`` is read by an allow-list unpickler."""

    def read_metadata(self, *args: Any, **kwargs: Any) -> Metadata:
        """Return the checkpoint's metadata, refusing a file that would build anything but DCP's own classes."""
        path = Path(self.path) / ".metadata"
        try:
            with open(path, "rb") as stream:
                _MetadataUnpickler(stream).load()
        except FileNotFoundError:
            raise CheckpointError(f"{path} does not exist; the folder is not a complete DCP checkpoint") from None
        except Exception as exc:  # unpickling a damaged or foreign file can raise nearly anything
            raise CheckpointError(
                f"{path} is not a DCP metadata file this package will read ({brief(exc)}); the checkpoint is "
                "corrupted or was not written by automodel-checkpoint: restore from another step"
            ) from None
        return super().read_metadata(*args, **kwargs)


class SafeLoadPlanner(DefaultLoadPlanner):
    """A ``DefaultLoadPlanner`` that reads non-tensor values with ``torch.load(weights_only=True)``."""

    def load_bytes(self, read_item: Any, value: io.BytesIO) -> None:
        """Load one non-tensor value (a learning rate, betas, ...) into the state dict being restored."""
        try:
            plain = torch.load(value, weights_only=True)
        except Exception as exc:  # a damaged or foreign value can fail in many ways; none may run code
            raise CheckpointError(f"a value of the DCP checkpoint is not plain data ({brief(exc)})") from None
        buffer = io.BytesIO()
        torch.save(plain, buffer)
        buffer.seek(0)
        super().load_bytes(read_item, buffer)
