"""AutoModelCrossEncoder, cross_encoder_scores and write_cross_encoder_files: rerankers scoring (query, passage) pairs.

A cross-encoder is a plain ``transformers.AutoModelForSequenceClassification`` model reading the pair as one
sequence. Its score is the raw logit (``num_labels=1``: one number per pair), not a sigmoid of it: losses
take logits and a ranking is the same either way. ``write_cross_encoder_files`` saves the identity as the
activation sentence-transformers applies, so ``CrossEncoder(path).predict(pairs)`` gives the same numbers.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import PreTrainedModel
from transformers.models.auto.modeling_auto import (
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
)

from automodel.models.auto_model import _from_config, _from_pretrained
from automodel.models.credentials import hub_kwargs
from automodel.models.errors import ModelError
from automodel.models.model_config import ConfigSource, ModelTask
from automodel.models.sentence_transformers_files import (
    cross_encoder_config_block,
    read_max_seq_length,
    write_cross_encoder_model_files,
)
from automodel.models.sources import load_errors_explained, pretrained_source
from automodel.models.text_batches import check_positive_int, evaluating, model_inputs, token_limit

SEQUENCE_CLASSIFICATION = ModelTask(
    transformers.AutoModelForSequenceClassification,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING,
    MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES,
    "sequence-classification",
)


class AutoModelCrossEncoder:
    """Build cross-encoders: transformers sequence-classification models with ``num_labels`` outputs per pair.

    The models returned are plain ``transformers`` models (``model(**inputs).logits`` is ``[N, num_labels]``)
    with one added attribute, ``max_seq_length`` (None or the token limit of a pair). Decoder backbones
    (Llama, Qwen3, ...) score the last non-pad token, so their config gets a ``pad_token_id`` (the eos
    token's when it has none); it must be the id the tokenizer pads with.
    """

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        num_labels: int = 1,
        max_seq_length: int | None = None,
        torch_dtype: str | torch.dtype = "auto",
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        **kwargs: Any,
    ) -> PreTrainedModel:
        """Load with ``transformers.AutoModelForSequenceClassification.from_pretrained``.

        A checkpoint without a classification head (a BERT, a Llama) gets a new, randomly initialized one.

        Args:
            pretrained_model_name_or_path: a local directory or a hub id (read from the local cache under
                ``HF_HUB_OFFLINE=1``); a sentence-transformers CrossEncoder folder works too.
            num_labels: outputs per pair (1: one relevance score).
            max_seq_length: token limit of a pair; None for the folder's sentence_bert_config.json value, if any.
            torch_dtype: see ``resolve_torch_dtype``; ``"auto"`` is bf16 on CUDA, fp32 on CPU.
            attn_implementation: ``"sdpa"``, ``"eager"``, ``"flash_attention_2"``, ... as transformers takes it.
            trust_remote_code: allow model code shipped with the checkpoint to run.
            **kwargs: passed to transformers (``revision``, ``pad_token_id``, ...); a hub token goes to the
                download only, as ``token``.

        Returns:
            The model, on the CPU unless ``device_map`` says otherwise, in eval mode as transformers leaves it.

        Raises:
            ModelError: for a path that does not exist or holds no config.json, an unreachable hub id, a model
                type with no sequence-classification class (naming the closest), a decoder config with neither
                pad nor eos token id, or a bad ``num_labels``, ``max_seq_length`` or dtype.
        """
        check_positive_int(num_labels, "num_labels")
        check_positive_int(max_seq_length, "max_seq_length", optional=True)
        source = pretrained_source(pretrained_model_name_or_path, needs_one_of=("config.json",))
        kwargs = hub_kwargs(kwargs, "model")
        with load_errors_explained(source, "model"):
            saved_length = read_max_seq_length(source, kwargs)
        model = _from_pretrained(
            SEQUENCE_CLASSIFICATION,
            source,
            torch_dtype,
            attn_implementation,
            trust_remote_code,
            {**kwargs, "num_labels": num_labels},
        )
        return _finish(model, max_seq_length if max_seq_length is not None else saved_length)

    @classmethod
    def from_config(
        cls,
        config: ConfigSource,
        *,
        num_labels: int = 1,
        max_seq_length: int | None = None,
        torch_dtype: str | torch.dtype = "auto",
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        seed: int | None = None,
        **overrides: Any,
    ) -> PreTrainedModel:
        """Build a randomly initialized cross-encoder from a backbone config.

        Args:
            config: a dict with ``model_type`` plus fields, a path to a directory holding config.json or to a
                .json file, or a ``transformers.PretrainedConfig`` (copied, never changed).
            num_labels: outputs per pair (1: one relevance score).
            max_seq_length: token limit of a pair; None for the tokenizer's.
            torch_dtype: see ``resolve_torch_dtype``; ``"auto"`` is bf16 on CUDA, fp32 on CPU.
            attn_implementation: ``"sdpa"``, ``"eager"``, ... as transformers takes it.
            trust_remote_code: allow the code named by the config's ``auto_map`` to run.
            seed: when given, the initial weights depend only on it and the global RNG state is left as it was.
            **overrides: config fields set on top of ``config`` (``num_hidden_layers=1``).

        Returns:
            The model, on the CPU, in training mode.

        Raises:
            ModelError: for a missing path, a config without ``model_type``, a type with no sequence-classification
                class (naming the closest), a decoder config with neither pad nor eos token id, or a bad
                ``num_labels``, ``max_seq_length`` or dtype.
        """
        check_positive_int(num_labels, "num_labels")
        check_positive_int(max_seq_length, "max_seq_length", optional=True)
        overrides = {**overrides, "num_labels": num_labels}
        model = _from_config(
            SEQUENCE_CLASSIFICATION, config, torch_dtype, attn_implementation, trust_remote_code, seed, overrides
        )
        return _finish(model, max_seq_length)


def cross_encoder_scores(
    model: PreTrainedModel,
    tokenizer: Any,
    pairs: Sequence[Sequence[str]],
    batch_size: int = 32,
    max_length: int | None = None,
) -> torch.Tensor:
    """Score (query, passage) pairs for evaluation: no gradient, eval mode, the model's mode restored after.

    Each pair is tokenized as one sequence (``tokenizer(queries, passages)``, truncating the longer first),
    as sentence-transformers' ``CrossEncoder`` does.

    Args:
        model: a sequence-classification model (``AutoModelCrossEncoder``).
        tokenizer: its tokenizer (with a pad token).
        pairs: ``(query, passage)`` pairs of strings.
        batch_size: pairs per forward pass.
        max_length: token limit of a pair; None for ``model.max_seq_length``, else the tokenizer's
            ``model_max_length`` capped at ``max_position_embeddings``.

    Returns:
        float32 raw logits on the model's device: ``[len(pairs)]`` when ``num_labels`` is 1, else
        ``[len(pairs), num_labels]``.

    Raises:
        ModelError: for a pair that is not two strings, or a ``batch_size`` or ``max_length`` that is not
            a positive int.
    """
    check_positive_int(batch_size, "batch_size")
    check_positive_int(max_length, "max_length", optional=True)
    pairs = list(pairs)
    for pair in pairs:
        if isinstance(pair, str) or len(pair) != 2 or not all(isinstance(text, str) for text in pair):
            raise ModelError(f"cross_encoder_scores takes (query, passage) pairs of strings, got {pair!r}.")
    limit = token_limit(tokenizer, model.config, max_length, getattr(model, "max_seq_length", None))
    scores = [torch.empty(0, model.config.num_labels)]
    with evaluating(model) as device:
        for start in range(0, len(pairs), batch_size):
            queries, passages = zip(*pairs[start : start + batch_size], strict=True)
            batch = tokenizer(
                list(queries), list(passages), padding=True, truncation=True, max_length=limit, return_tensors="pt"
            )
            scores.append(model(**model_inputs(batch, model.forward, device)).logits.float())
    logits = torch.cat([part.to(device) for part in scores])
    return logits[:, 0] if model.config.num_labels == 1 else logits


def write_cross_encoder_files(
    model: PreTrainedModel, directory: str | os.PathLike, *, max_seq_length: int | None = None
) -> Path:
    """Add what ``sentence_transformers.CrossEncoder`` reads to a folder holding the model's checkpoint.

    Call it after ``model.save_pretrained(directory)`` and ``tokenizer.save_pretrained(directory)``. It
    rewrites config.json with a ``sentence_transformers`` block naming the identity activation, and writes
    modules.json, sentence_bert_config.json and config_sentence_transformers.json (with the same activation),
    so ``CrossEncoder(directory).predict(pairs)`` returns the raw logits ``cross_encoder_scores`` gives.
    Weights and tokenizer are not written.

    Args:
        model: the sequence-classification model saved in ``directory``.
        directory: the folder (created when missing).
        max_seq_length: token limit of a pair saved for sentence-transformers; None for ``model.max_seq_length``.

    Returns:
        ``directory`` as a Path.

    Raises:
        ModelError: when ``model`` is not a transformers model, or ``max_seq_length`` is not a positive int.
    """
    if not isinstance(model, PreTrainedModel):
        raise ModelError(
            f"write_cross_encoder_files takes a transformers sequence-classification model, not "
            f"{type(model).__name__}; build it with AutoModelCrossEncoder."
        )
    check_positive_int(max_seq_length, "max_seq_length", optional=True)
    path = Path(directory)
    config = copy.deepcopy(model.config)
    config.architectures = [type(model).__name__]
    config.sentence_transformers = cross_encoder_config_block()
    config.save_pretrained(path)
    limit = max_seq_length if max_seq_length is not None else getattr(model, "max_seq_length", None)
    write_cross_encoder_model_files(path, max_seq_length=limit)
    return path


def _finish(model: PreTrainedModel, max_seq_length: int | None) -> PreTrainedModel:
    """Give ``model`` a pad token id (the eos token's when missing) and the ``max_seq_length`` attribute."""
    config = model.config.get_text_config()
    if config.pad_token_id is None:
        eos = config.eos_token_id
        eos = eos[0] if isinstance(eos, (list, tuple)) and eos else eos
        if eos is None:
            raise ModelError(
                f"the {config.model_type} config has neither pad_token_id nor eos_token_id, and a cross-encoder "
                "needs one to find the last token of each pair; pass pad_token_id= (the tokenizer's pad token id)."
            )
        config.pad_token_id = eos
    model.max_seq_length = max_seq_length
    return model
