"""load_tokenizer: transformers' AutoTokenizer with a pad token guaranteed and automodel's errors."""

from __future__ import annotations

import os
from typing import Any

from transformers import AutoTokenizer, PreTrainedTokenizerBase

from automodel.models.credentials import hub_kwargs
from automodel.models.sources import load_errors_explained, pretrained_source

# A local directory must hold one of these for AutoTokenizer to find a tokenizer in it.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.json",
    "vocab.txt",
    "tokenizer.model",
    "spiece.model",
    "sentencepiece.bpe.model",
)


def load_tokenizer(pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> PreTrainedTokenizerBase:
    """Load a tokenizer with ``transformers.AutoTokenizer.from_pretrained`` and make sure it can pad.

    Args:
        pretrained_model_name_or_path: a directory written by ``save_pretrained`` (or
            ``build_tokenizer``), or a hub id (read from the local cache when ``HF_HUB_OFFLINE=1``).
        **kwargs: passed to ``AutoTokenizer.from_pretrained`` (``revision``, ``trust_remote_code``, ...); a hub
            token (``token``, or ``hf_token``/``use_auth_token``) goes to the download only (``hub_kwargs``).

    Returns:
        The tokenizer. When it has no pad token, its eos token is used as the pad token
        (a tokenizer with neither is returned as it is).

    Raises:
        ModelError: for a local path that does not exist or holds no tokenizer files, a hub id
            that cannot be reached (offline or not found), or a keyword that looks like a credential.
    """
    source = pretrained_source(pretrained_model_name_or_path, needs_one_of=TOKENIZER_FILES)
    with load_errors_explained(source, "tokenizer"):
        tokenizer = AutoTokenizer.from_pretrained(source, **hub_kwargs(kwargs, "tokenizer"))
    return with_pad_token(tokenizer)


def with_pad_token(tokenizer: PreTrainedTokenizerBase) -> PreTrainedTokenizerBase:
    """Set ``tokenizer``'s pad token to its eos token when it has none (in place).

    Args:
        tokenizer: any transformers tokenizer; one with neither a pad nor an eos token is left as it is.

    Returns:
        The same tokenizer.
    """
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
