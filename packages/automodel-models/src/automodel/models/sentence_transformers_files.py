"""The files sentence-transformers reads beside a transformers checkpoint, written for bi- and cross-encoders.

A sentence-transformers folder is a transformers checkpoint (config.json, weights, tokenizer) plus
``modules.json`` (the pipeline: Transformer, Pooling, Normalize), ``sentence_bert_config.json``
(the Transformer's settings), ``1_Pooling/config.json``, ``2_Normalize/`` and
``config_sentence_transformers.json`` (prompts, similarity, activation). The module types and pooling
keys written here are the long-standing ones (``sentence_transformers.models.Pooling``,
``pooling_mode_mean_tokens``), which sentence-transformers 2 to 6 all read. This module never imports
sentence-transformers.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers.utils import cached_file

from automodel.models.errors import ModelError
from automodel.models.pooling import POOLING_MODES

TRANSFORMER_TYPE = "sentence_transformers.models.Transformer"
POOLING_TYPE = "sentence_transformers.models.Pooling"
NORMALIZE_TYPE = "sentence_transformers.models.Normalize"
IDENTITY_ACTIVATION = "torch.nn.modules.linear.Identity"
POOLING_DIR = "1_Pooling"
NORMALIZE_DIR = "2_Normalize"
# The oldest sentence-transformers whose folders this module writes and reads (prompts, pooling flags).
FORMAT_VERSION = "5.0.0"

# sentence-transformers' name of each pooling mode of automodel.models.pooling.
_ST_POOLING = {"mean": "mean", "cls": "cls", "last_token": "lasttoken", "weighted_mean": "weightedmean"}
# The boolean pooling keys of 1_Pooling/config.json and the mode each stands for, in sentence-transformers' order.
_POOLING_FLAGS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# Keyword arguments of a from_pretrained call that also apply to fetching one file from the hub.
_DOWNLOAD_KEYS = ("token", "revision", "cache_dir", "local_files_only", "force_download", "proxies")


@dataclass(frozen=True)
class BiEncoderSettings:
    """What a sentence-transformers folder says about its bi-encoder (None where it says nothing).

    ``pooling`` is one of ``POOLING_MODES``; ``pooling_problem`` explains why the folder's pooling has
    no such name (``max`` pooling, several modes, prompts left out of pooling), and then ``pooling`` is None.
    ``transformer_path`` is the folder of the transformers checkpoint inside it (``""`` for the root).
    """

    transformer_path: str
    pooling: str | None
    pooling_problem: str | None
    normalize: bool
    max_seq_length: int | None
    query_prompt: str | None
    passage_prompt: str | None


def write_bi_encoder_files(
    directory: str | os.PathLike,
    *,
    embedding_dimension: int,
    pooling: str,
    normalize: bool,
    query_prompt: str | None,
    passage_prompt: str | None,
    max_seq_length: int | None,
) -> Path:
    """Write the sentence-transformers files of a bi-encoder whose checkpoint is (or will be) in ``directory``.

    Args:
        directory: the checkpoint folder; created when missing. Weights, config.json and tokenizer are not written.
        embedding_dimension: the backbone's hidden size.
        pooling: one of ``POOLING_MODES``.
        normalize: whether embeddings are L2-normalized (a Normalize module, cosine similarity; else dot product).
        query_prompt: text put before each query, saved as the prompts ``query``; None for none.
        passage_prompt: text put before each passage, saved as the prompts ``document`` and ``passage``.
        max_seq_length: the token limit sentence-transformers truncates to; None leaves the tokenizer's.

    Returns:
        ``directory`` as a Path.

    Raises:
        ModelError: for a ``pooling`` not in ``POOLING_MODES``.
    """
    if pooling not in _ST_POOLING:
        raise ModelError(f"pooling {pooling!r} is not supported; use one of {', '.join(POOLING_MODES)}.")
    path = Path(directory)
    modules = [("", TRANSFORMER_TYPE), (POOLING_DIR, POOLING_TYPE)]
    if normalize:
        modules.append((NORMALIZE_DIR, NORMALIZE_TYPE))
    _write_modules(path, modules)
    _write_json(path / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False})
    flags = {key: mode == _ST_POOLING[pooling] for key, mode in _POOLING_FLAGS.items()}
    pooling_config = {"word_embedding_dimension": embedding_dimension, **flags, "include_prompt": True}
    _write_json(path / POOLING_DIR / "config.json", pooling_config)
    if normalize:
        _write_json(path / NORMALIZE_DIR / "config.json", {"module_input_name": "sentence_embedding"})
    prompts = {}
    if query_prompt is not None:
        prompts["query"] = query_prompt
    if passage_prompt is not None:
        prompts["document"] = prompts["passage"] = passage_prompt
    model_config = {
        "__version__": _versions(),
        "model_type": "SentenceTransformer",
        "prompts": prompts,
        "default_prompt_name": None,
        "similarity_fn_name": "cosine" if normalize else "dot",
    }
    _write_json(path / "config_sentence_transformers.json", model_config)
    return path


def write_cross_encoder_model_files(directory: str | os.PathLike, *, max_seq_length: int | None) -> None:
    """Write modules.json, sentence_bert_config.json and config_sentence_transformers.json of a cross-encoder.

    The activation saved is the identity, so ``CrossEncoder.predict`` returns the raw logits.

    Args:
        directory: the checkpoint folder (created when missing).
        max_seq_length: the token limit of a (query, passage) pair; None leaves the tokenizer's.
    """
    path = Path(directory)
    _write_modules(path, [("", TRANSFORMER_TYPE)])
    transformer_config = {"transformer_task": "sequence-classification", "do_lower_case": False}
    if max_seq_length is not None:
        transformer_config["max_seq_length"] = max_seq_length
    _write_json(path / "sentence_bert_config.json", transformer_config)
    model_config = {
        "__version__": _versions(),
        "model_type": "CrossEncoder",
        "activation_fn": IDENTITY_ACTIVATION,
        "prompts": {},
        "default_prompt_name": None,
    }
    _write_json(path / "config_sentence_transformers.json", model_config)


def cross_encoder_config_block() -> dict[str, str]:
    """Return the ``sentence_transformers`` block of a cross-encoder's config.json: the identity activation.

    sentence-transformers reads it when a folder has no config_sentence_transformers.json (and before 5.x).
    """
    return {"activation_fn": IDENTITY_ACTIVATION, "version": _versions()["sentence_transformers"]}


def read_bi_encoder_settings(source: str, kwargs: Mapping[str, Any]) -> BiEncoderSettings | None:
    """Read a sentence-transformers folder's pipeline, pooling, normalization, length and prompts.

    Args:
        source: a local directory or a hub id (files are read from the cache or downloaded).
        kwargs: the from_pretrained keyword arguments; the download ones (``token``, ``revision``, ...) are used.

    Returns:
        The settings, or None when ``source`` holds no modules.json (a plain transformers checkpoint).

    Raises:
        ModelError: for a file that is not valid JSON, a modules.json without a Transformer module, or
            one with a module a BiEncoder cannot reproduce (Dense, LayerNorm, ...), naming it.
    """
    download = {key: kwargs[key] for key in _DOWNLOAD_KEYS if key in kwargs}
    modules = _read_json(source, "modules.json", download)
    if modules is None:
        return None
    kinds = {}
    for module in modules if isinstance(modules, list) else []:
        kind = str(module.get("type", "")).rsplit(".", 1)[-1]
        if kind not in ("Transformer", "Pooling", "Normalize"):
            raise ModelError(
                f"modules.json of {source} lists a `{module.get('type')}` module at `{module.get('path')}`, which an "
                "automodel BiEncoder does not reproduce (it has a transformer, pooling and normalization only); "
                "start from the folder's transformers checkpoint instead and give pooling= and normalize=."
            )
        kinds[kind] = str(module.get("path", ""))
    if "Transformer" not in kinds:
        raise ModelError(f"modules.json of {source} lists no Transformer module; it is not a bi-encoder folder.")
    pooling, problem = "mean", None
    if "Pooling" in kinds:
        pooling_file = _join(kinds["Pooling"], "config.json")
        pooling, problem = _pooling_of(_read_json(source, pooling_file, download) or {}, f"{source}/{pooling_file}")
    transformer_config = _read_json(source, _join(kinds["Transformer"], "sentence_bert_config.json"), download) or {}
    model_config = _read_json(source, "config_sentence_transformers.json", download) or {}
    prompts = model_config.get("prompts") or {}
    return BiEncoderSettings(
        transformer_path=kinds["Transformer"],
        pooling=pooling,
        pooling_problem=problem,
        normalize="Normalize" in kinds,
        max_seq_length=transformer_config.get("max_seq_length"),
        query_prompt=prompts.get("query") or None,
        passage_prompt=prompts.get("document") or prompts.get("passage") or None,
    )


def read_max_seq_length(source: str, kwargs: Mapping[str, Any]) -> int | None:
    """Return the ``max_seq_length`` of a folder's sentence_bert_config.json, or None when it has none.

    Args:
        source: a local directory or a hub id.
        kwargs: the from_pretrained keyword arguments; the download ones are used.
    """
    download = {key: kwargs[key] for key in _DOWNLOAD_KEYS if key in kwargs}
    return (_read_json(source, "sentence_bert_config.json", download) or {}).get("max_seq_length")


def _pooling_of(config: Mapping[str, Any], where: str) -> tuple[str | None, str | None]:
    """Return (pooling mode of POOLING_MODES, None), or (None, why not) for a 1_Pooling/config.json."""
    modes = config.get("pooling_mode")
    if modes is None:
        modes = [mode for key, mode in _POOLING_FLAGS.items() if config.get(key)] or ["mean"]
    modes = [modes] if isinstance(modes, str) else list(modes)
    ours = {st_name: name for name, st_name in _ST_POOLING.items()}
    if len(modes) != 1 or modes[0] not in ours:
        return None, f"{where} pools with {' + '.join(map(str, modes))}, which a BiEncoder does not do"
    if config.get("include_prompt", True) is False:
        return None, f"{where} leaves prompt tokens out of pooling, which a BiEncoder does not do"
    return ours[modes[0]], None


def _read_json(source: str, filename: str, download: Mapping[str, Any]) -> Any:
    """Return the JSON in ``source``/``filename`` (a local folder, or a hub id through the cache), or None if absent."""
    if Path(source).is_dir():
        file = Path(source) / filename
        found = str(file) if file.is_file() else None
    else:
        found = cached_file(
            source,
            filename,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
            **download,
        )
    if found is None:
        return None
    try:
        return json.loads(Path(found).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{found} is not valid JSON ({err}); fix or delete it.") from err


def _write_modules(path: Path, modules: list[tuple[str, str]]) -> None:
    """Write modules.json listing the ``(folder, type)`` pairs in order."""
    entries = [
        {"idx": index, "name": str(index), "path": folder, "type": module_type}
        for index, (folder, module_type) in enumerate(modules)
    ]
    _write_json(path / "modules.json", entries)


def _write_json(file: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``file``, creating its folder."""
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _join(folder: str, filename: str) -> str:
    """Return ``folder/filename``, or ``filename`` for the root folder ``""``."""
    return f"{folder}/{filename}" if folder else filename


def _versions() -> dict[str, str]:
    """Return the ``__version__`` block: sentence-transformers (installed, else FORMAT_VERSION), transformers, torch."""
    try:
        st_version = importlib.metadata.version("sentence-transformers")
    except importlib.metadata.PackageNotFoundError:
        st_version = FORMAT_VERSION
    return {"sentence_transformers": st_version, "transformers": transformers.__version__, "pytorch": torch.__version__}
