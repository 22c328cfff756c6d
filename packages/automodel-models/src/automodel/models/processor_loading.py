"""load_processor: transformers' AutoProcessor (image processor and tokenizer) with a pad token and clear errors."""

from __future__ import annotations

import os
from typing import Any

from transformers import AutoProcessor, PreTrainedTokenizerBase, ProcessorMixin

from automodel.models.sources import load_errors_explained, pretrained_source
from automodel.models.tokenizer_loading import TOKENIZER_FILES, with_pad_token

# A local directory must hold one of these for AutoProcessor to find a processor (or at least a tokenizer) in it.
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json", *TOKENIZER_FILES)


def load_processor(
    pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any
) -> ProcessorMixin | PreTrainedTokenizerBase:
    """Load a processor with ``transformers.AutoProcessor.from_pretrained`` and make sure its tokenizer can pad.

    Args:
        pretrained_model_name_or_path: a directory written by ``save_pretrained`` (or
            ``build_tiny_vlm``), or a hub id (read from the local cache when ``HF_HUB_OFFLINE=1``).
        **kwargs: passed to ``AutoProcessor.from_pretrained`` (``revision``, ``trust_remote_code``, ...).

    Returns:
        The processor (a ``LlavaProcessor``, ``Qwen2VLProcessor``, ...; a tokenizer where the
        directory holds nothing more). When its tokenizer has no pad token, the eos token is used.

    Raises:
        ModelError: for a local path that does not exist or holds no processor or tokenizer files,
            or a hub id that cannot be reached (offline or not found).
    """
    source = pretrained_source(pretrained_model_name_or_path, needs_one_of=PROCESSOR_FILES)
    with load_errors_explained(source, "processor"):
        processor = AutoProcessor.from_pretrained(source, **kwargs)
    tokenizer = processor if isinstance(processor, PreTrainedTokenizerBase) else getattr(processor, "tokenizer", None)
    if tokenizer is not None:
        with_pad_token(tokenizer)
    return processor
