"""Hiding secrets (tokens, keys, passwords) wherever a config is printed or saved."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from automodel.config.interpolation import has_interpolation, referenced_env_names, referenced_keys

REDACTED = "<redacted>"
_SECRET_WORDS = {"token", "key", "password", "passwd", "secret", "secrets", "apikey", "credential", "credentials"}
_PLAIN_TOKEN_WORDS = {
    "pad",
    "eos",
    "bos",
    "unk",
    "sep",
    "cls",
    "mask",
    "image",
    "video",
    "audio",
    "boi",
    "eoi",
    "start",
    "end",
    "special",
    "additional",
    "max",
    "num",
    "new",
    "vision",
    "placeholder",
    "prompt",
    "split",
}
_KEY_OWNERS = {
    "api",
    "access",
    "secret",
    "private",
    "auth",
    "encryption",
    "signing",
    "ssh",
    "license",
    "client",
    "service",
    "account",
    "hf",
    "hub",
    "wandb",
    "openai",
    "aws",
    "s3",
    "gcs",
    "azure",
    "storage",
    "user",
    "master",
}


def _words(name: str) -> list[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name)
    return [w for w in re.split(r"[^A-Za-z0-9]+", spaced.lower()) if w]


def is_secret_key(name: Any) -> bool:
    """True when a key name looks like it holds a secret (hf_token, api_key, wandbApiKey, password).

    Words are split on ``_``, ``-``, ``.`` and camelCase; the last word decides, so
    ``num_key_value_heads``, ``token_type_ids``, ``pad_token`` and ``max_tokens`` are not secrets.
    A name ending in ``key`` is a secret alone (``key``) or after an owner word (``api_key``,
    ``wandb_key``), not after others (``text_key``, ``label_key`` name columns).
    """
    if not isinstance(name, str):
        return False
    words = _words(name)
    if not words or words[-1] not in _SECRET_WORDS:
        return False
    if words[-1] == "key" and len(words) > 1:
        return words[-2] in _KEY_OWNERS
    return not (words[-1] == "token" and len(words) > 1 and words[-2] in _PLAIN_TOKEN_WORDS)


def reads_hidden_value(raw: Any) -> bool:
    """True when a value as written reads the environment (``${env:NAME}``) or a secret-looking key (``${hub.token}``).

    Messages show such a value as written, never what it reads.
    """
    return bool(referenced_env_names(raw)) or any(is_secret_key(k) for k in referenced_keys(raw))


def shown_value(path: Sequence, raw: Any) -> str:
    """Return how a message may show the value written at ``path``: ``<redacted>`` under a secret key, else its repr.

    ``raw`` is the value as written (``${env:NAME}`` unresolved), so a value read from the
    environment is shown as the reference, never as what it reads.
    """
    return REDACTED if any(is_secret_key(p) for p in path) else repr(raw)


def literal_secret_paths(data: Any, path: tuple = ()) -> list[tuple]:
    """Return the paths of secrets written as literals in plain (unresolved) config data.

    A literal secret is a non-empty string or number, without ``${...}``, under a key that looks
    secret (``hub.hf_token: hf_abc``, ``secrets: {wandb: abc}``); ``${env:HF_TOKEN}`` is a
    reference and is not one.
    """
    if isinstance(data, dict):
        return [p for key, value in data.items() for p in literal_secret_paths(value, (*path, key))]
    if isinstance(data, list):
        return [p for index, value in enumerate(data) for p in literal_secret_paths(value, (*path, index))]
    if not any(is_secret_key(p) for p in path) or has_interpolation(data) or not _hideable(data):
        return []
    return [path]


def redact_secrets(data: Any, raw: Any = None) -> Any:
    """Return a copy of ``data`` with secret values replaced by ``<redacted>``.

    A value is secret when its key looks secret (``is_secret_key``) and it is a non-empty
    string or number, or when its unresolved form in ``raw`` reads a secret-looking
    environment variable (``${env:HF_TOKEN}``) or key (``${auth.hf_token}``). Every such
    value inside a section or list under a secret-looking key (``secrets: {wandb: ...}``)
    is secret too.
    """
    if isinstance(data, dict):
        raw_map = raw if isinstance(raw, dict) else {}
        result = {}
        for key, value in data.items():
            raw_value = raw_map.get(key)
            names = [*referenced_env_names(raw_value), *referenced_keys(raw_value)]
            if is_secret_key(key) or any(is_secret_key(n) for n in names):
                result[key] = _redact_all(value)
            else:
                result[key] = redact_secrets(value, raw_value)
        return result
    if isinstance(data, list):
        raw_list = raw if isinstance(raw, list) and len(raw) == len(data) else [None] * len(data)
        return [redact_secrets(v, r) for v, r in zip(data, raw_list, strict=True)]
    return data


def _redact_all(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _redact_all(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact_all(v) for v in value]
    return REDACTED if _hideable(value) else value


def _hideable(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool) and value != ""
