"""Where pretrained files come from (a local directory or a hub id), and errors that say which was meant."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from automodel.models.errors import ModelError

# What the Hugging Face hub accepts as a repo id: `name` or `owner/name`.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
_TRUE = {"1", "true", "yes", "on"}


def pretrained_source(name_or_path: str | os.PathLike, needs_one_of: tuple[str, ...]) -> str:
    """Return ``name_or_path`` as the string transformers should load from, after checking local paths.

    Args:
        name_or_path: a local directory, or a hub id (``owner/name``) when no such directory exists.
        needs_one_of: file names of which a local directory must hold at least one (``config.json``).

    Returns:
        The directory (``~`` expanded) when it exists, else the hub id unchanged.

    Raises:
        ModelError: when the path is a file, a directory without any of ``needs_one_of``, or
            neither an existing directory nor something that could be a hub id.
    """
    text = os.fspath(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        if not any((path / name).is_file() for name in needs_one_of):
            raise ModelError(
                f"directory {path} holds none of {', '.join(needs_one_of)}; point at a directory "
                "written by save_pretrained."
            )
        return str(path)
    if path.exists():
        raise ModelError(f"{path} is a file; give the directory that holds it (the one save_pretrained wrote).")
    if isinstance(name_or_path, os.PathLike) or not _HUB_ID.match(text):
        raise ModelError(f"local path {text} does not exist; check the path (relative paths start at {Path.cwd()}).")
    return text


def hub_offline() -> bool:
    """Return whether HF_HUB_OFFLINE or TRANSFORMERS_OFFLINE is set to a true value."""
    names = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    return any(os.environ.get(name, "").strip().lower() in _TRUE for name in names)


@contextmanager
def load_errors_explained(source: str, what: str) -> Iterator[None]:
    """Turn the OSError transformers raises for files it cannot find into a ModelError saying what to do.

    Args:
        source: what was passed to ``from_pretrained`` (a directory or a hub id).
        what: what was being loaded, for the message (``"model"``, ``"tokenizer"``).

    Returns:
        A context manager; other exceptions pass through unchanged.
    """
    try:
        yield
    except OSError as err:
        detail = " ".join(str(err).split())
        if Path(source).is_dir():
            advice = "check that the directory holds what save_pretrained wrote"
        elif hub_offline():
            advice = (
                f"it is not a local directory and not in the local Hugging Face cache, and HF_HUB_OFFLINE=1 "
                f"forbids downloading it: check the path, or download it where the hub is reachable "
                f"(`hf download {source}`) and run again"
            )
        else:
            advice = (
                "it is not a local directory and the hub did not give it: check the path, the hub id, "
                "your network and, for a gated model, your HF_TOKEN"
            )
        raise ModelError(f"could not load the {what} `{source}`: {advice}. transformers said: {detail}") from err


def weights_snapshot(repo_id: str, kwargs: dict[str, Any]) -> Path:
    """Return the local folder of a hub model's config and safetensors files, downloading what the cache lacks.

    Takes the hub id and the hub keywords (``revision``, ``token``, ...); offline, only the cache is read.
    """
    from huggingface_hub import snapshot_download

    options = {key: kwargs[key] for key in ("revision", "token", "cache_dir") if kwargs.get(key) is not None}
    return Path(snapshot_download(repo_id, allow_patterns=["*.json", "*.safetensors"], **options))
