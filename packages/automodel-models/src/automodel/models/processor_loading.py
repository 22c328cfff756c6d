"""load_processor: transformers' AutoProcessor (image processor and tokenizer) with a pad token and clear errors."""

from __future__ import annotations

import os
from typing import Any

from transformers import AutoProcessor, PreTrainedTokenizerBase, ProcessorMixin

from automodel.models.credentials import hub_kwargs
from automodel.models.errors import ModelError
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
        **kwargs: passed to ``AutoProcessor.from_pretrained`` (``revision``, ``trust_remote_code``, ...); a hub
            token goes to the download only (``hub_kwargs``).

    Returns:
        The processor (a ``LlavaProcessor``, ``Qwen2VLProcessor``, ...; a tokenizer where the
        directory holds nothing more). When its tokenizer has no pad token, the eos token is used.

    Raises:
        ModelError: for a local path that does not exist or holds no processor or tokenizer files,
            a hub id that cannot be reached (offline or not found), or a keyword that looks like a credential.
    """
    source = pretrained_source(pretrained_model_name_or_path, needs_one_of=PROCESSOR_FILES)
    with load_errors_explained(source, "processor"):
        processor = AutoProcessor.from_pretrained(source, **hub_kwargs(kwargs, "processor"))
    tokenizer = processor if isinstance(processor, PreTrainedTokenizerBase) else getattr(processor, "tokenizer", None)
    if tokenizer is not None:
        with_pad_token(tokenizer)
    return processor


IMAGE_TOKEN_FIELDS = ("image_token_id", "image_token_index")


def check_processor_matches(model: Any, processor: Any) -> None:
    """Raise ModelError when ``processor`` cannot feed ``model``: its image token is not the one the model
    replaces with image features, or its tokenizer has more tokens than the model has embeddings.

    Args:
        model: a transformers image-text-to-text model.
        processor: its processor (or a tokenizer, whose vocabulary alone is checked).
    """
    tokenizer = processor if isinstance(processor, PreTrainedTokenizerBase) else getattr(processor, "tokenizer", None)
    rows = model.get_input_embeddings().num_embeddings
    if tokenizer is not None and len(tokenizer) > rows:
        raise ModelError(
            f"the processor's tokenizer has {len(tokenizer)} tokens but the model embeds only {rows}; "
            "load the processor saved with this model"
        )
    processor_id = getattr(processor, "image_token_id", None)
    field = next((name for name in IMAGE_TOKEN_FIELDS if getattr(model.config, name, None) is not None), None)
    if processor_id is None or field is None:
        return
    model_id = getattr(model.config, field)
    if processor_id != model_id:
        token = getattr(processor, "image_token", "its image token")
        raise ModelError(
            f"the processor's image token {token} has id {processor_id} but the model expects image features at id "
            f"{model_id} (config.{field}); load the processor saved with this model"
        )
