"""The files of a latent cache: names, the fingerprint, and writing them atomically.

A cache folder holds ``shard-00000.safetensors``, ... (a tensor ``"{index}.{key}"`` per
sample and key, and the shard's description as JSON under the metadata key
``automodel_latent_cache``), ``null_conditioning.safetensors`` when given, and
``index.json``, written last, which marks the cache complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from automodel.data.errors import DataError

FORMAT = 1
INDEX_FILE = "index.json"
NULL_CONDITIONING_FILE = "null_conditioning.safetensors"
METADATA_KEY = "automodel_latent_cache"
SHARD_GLOB = "shard-*.safetensors"
PREPROCESS_HINT = (
    "run the preprocessing first (automodel preprocess diffusion -c cfg.yaml); it resumes where it stopped"
)


def shard_file(shard: int) -> str:
    """The file name of shard ``shard``: ``shard-00000.safetensors``, ..."""
    return f"shard-{shard:05d}.safetensors"


def canonical_fingerprint(fingerprint: dict[str, Any]) -> dict[str, Any]:
    """Return the fingerprint as it reads back from JSON (tuples become lists), so fingerprints compare equal.

    Raises:
        DataError: the fingerprint is not a dict of JSON values.
    """
    if not isinstance(fingerprint, dict):
        raise DataError(f"the cache fingerprint must be a dict, not {type(fingerprint).__name__}")
    try:
        return json.loads(json.dumps(fingerprint, sort_keys=True))
    except (TypeError, ValueError) as error:
        raise DataError(
            f"the cache fingerprint cannot be written as JSON: {error}", hint="use strings, numbers and lists"
        ) from error


def fingerprint_differences(cached: dict[str, Any], expected: dict[str, Any]) -> list[str]:
    """Describe each key on which two fingerprints differ: ``"vae: the cache has 'a', expected 'b'"``."""
    return [
        f"{key}: the cache has {cached.get(key, '(none)')!r}, expected {expected.get(key, '(none)')!r}"
        for key in sorted(set(cached) | set(expected))
        if cached.get(key) != expected.get(key)
    ]


def refuse_other_cache(folder: Path, cached: dict[str, Any], expected: dict[str, Any], what: str) -> None:
    """Raise DataError when ``what`` in ``folder`` was written with another fingerprint than ``expected``."""
    differences = fingerprint_differences(cached, expected)
    if differences:
        raise DataError(
            f"{folder} holds a latent cache of another model or data ({what}; {'; '.join(differences)})",
            hint="remove the folder or choose another cache directory",
        )


def write_json_atomic(path: Path, value: Any) -> None:
    """Write JSON to a temporary file beside ``path``, then rename it over ``path``."""
    temporary = path.with_name(f"{path.name}.tmp")
    temporary.write_text(json.dumps(value), encoding="utf-8")
    os.replace(temporary, path)


def save_atomic(tensors: dict[str, torch.Tensor], path: Path, description: dict[str, Any]) -> None:
    """Save tensors as safetensors with ``description`` as JSON metadata, under a temporary name renamed at the end."""
    temporary = path.with_name(f"{path.name}.tmp")
    save_file(tensors, str(temporary), metadata={METADATA_KEY: json.dumps(description)})
    os.replace(temporary, path)


def read_description(path: Path) -> dict[str, Any]:
    """Return the description a cache file was saved with.

    Raises:
        DataError: the file is missing, not safetensors, or not written by the latent cache.
    """
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except (OSError, SafetensorError) as error:
        raise DataError(
            f"{path} cannot be read as safetensors: {error}", hint="remove it and run the preprocessing again"
        ) from error
    if METADATA_KEY not in metadata:
        raise DataError(
            f"{path} was not written by the latent cache", hint="remove it or choose another cache directory"
        )
    return json.loads(metadata[METADATA_KEY])


def read_index(folder: Path) -> dict[str, Any]:
    """Return a cache's ``index.json``.

    Raises:
        DataError: there is no ``index.json`` (the cache is missing or incomplete), or it is not a cache index.
    """
    path = folder / INDEX_FILE
    if not path.is_file():
        state = "is incomplete (it has no index.json)" if folder.is_dir() else "does not exist"
        raise DataError(f"the latent cache {folder} {state}", hint=PREPROCESS_HINT)
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"{path} is not valid JSON: {error}", hint=PREPROCESS_HINT) from error
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(
            f"{path} is not a latent cache index of format {FORMAT}",
            hint="remove the folder and run the preprocessing again",
        )
    return index
