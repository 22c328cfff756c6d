"""BiEncoder and AutoModelBiEncoder: a transformers backbone that embeds texts, saved as a sentence-transformers folder.

A BiEncoder holds the backbone under its ``base_model_prefix`` (``bert``, ``model``, ...), so its
``state_dict()`` keys are those of a transformers task-model checkpoint and ``transformers.AutoModel``
(hence sentence-transformers) loads them. It pools the last hidden states (``automodel.models.pooling``)
and L2-normalizes them when asked; ``save_pretrained`` writes a folder ``SentenceTransformer(path)`` loads
and that gives the same embeddings.
"""

from __future__ import annotations

import copy
import inspect
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import transformers
from safetensors.torch import save_file
from transformers import PretrainedConfig, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_MAPPING, MODEL_MAPPING_NAMES

from automodel.models.auto_model import _from_config, _from_pretrained
from automodel.models.credentials import hub_kwargs
from automodel.models.errors import ModelError
from automodel.models.model_config import ConfigSource, ModelTask
from automodel.models.pooling import POOLING_MODES, check_pooling, pool
from automodel.models.sentence_transformers_files import (
    BiEncoderSettings,
    read_bi_encoder_settings,
    write_bi_encoder_files,
)
from automodel.models.sources import load_errors_explained, pretrained_source
from automodel.models.text_batches import check_positive_int, evaluating, model_inputs, token_limit

BASE_MODEL = ModelTask(transformers.AutoModel, MODEL_MAPPING, MODEL_MAPPING_NAMES, "base-model (AutoModel)")
# The settings of a checkpoint without sentence-transformers files.
PLAIN_CHECKPOINT = BiEncoderSettings(
    transformer_path="",
    pooling="mean",
    pooling_problem=None,
    normalize=True,
    max_seq_length=None,
    query_prompt=None,
    passage_prompt=None,
)


class BiEncoder(torch.nn.Module):
    """A transformers backbone that turns each text into one (normalized) embedding.

    Attributes:
        pooling: one of ``POOLING_MODES``: ``mean``, ``cls``, ``last_token`` or ``weighted_mean``.
        normalize: whether embeddings are L2-normalized (then dot product is cosine similarity).
        query_prompt: text put before each query by ``encode(..., prompt=model.query_prompt)`` and
            sentence-transformers' ``encode(..., prompt_name="query")``; None for none.
        passage_prompt: the same for passages (prompt names ``document`` and ``passage``).
        max_seq_length: the token limit of ``encode`` and of sentence-transformers; None for the tokenizer's.
        log_temperature: a trainable scalar parameter when built with ``learnable_temperature``, else None.
        causal: whether the backbone attends causally (decoder-only); it then gets position ids counted
            from each row's first real token, so left and right padding give the same embeddings.
    """

    def __init__(
        self,
        backbone: PreTrainedModel,
        *,
        pooling: str = "mean",
        normalize: bool = True,
        query_prompt: str | None = None,
        passage_prompt: str | None = None,
        max_seq_length: int | None = None,
        learnable_temperature: float | None = None,
    ) -> None:
        """Wrap ``backbone`` (a transformers base model, as ``transformers.AutoModel`` builds).

        Args:
            backbone: registered as the submodule named by its ``base_model_prefix``.
            pooling: see ``POOLING_MODES``; ``cls`` is refused for a causal backbone.
            normalize: L2-normalize the pooled embeddings.
            query_prompt: text put before each query; None for none.
            passage_prompt: text put before each passage; None for none.
            max_seq_length: the token limit (a positive int) or None.
            learnable_temperature: None, or the initial value (> 0) of a trained temperature: the model
                then has the parameter ``log_temperature`` (in the backbone's dtype) and ``temperature``.

        Raises:
            ModelError: for a backbone without a usable ``base_model_prefix``, an unknown pooling, ``cls``
                pooling on a causal backbone, or a bad ``normalize``, ``max_seq_length`` or ``learnable_temperature``.
        """
        super().__init__()
        name = getattr(backbone, "base_model_prefix", "")
        if not name or not name.isidentifier() or hasattr(BiEncoder, name):
            raise ModelError(
                f"the backbone {type(backbone).__name__} has base_model_prefix {name!r}, which cannot name it inside a "
                "BiEncoder; use a transformers base model (transformers.AutoModel) of a standard architecture."
            )
        self._backbone_name = name
        self.add_module(name, backbone)
        # No pooling mode reads the backbone's own pooler (BERT's): frozen, it gets no gradient that
        # DistributedDataParallel would wait for, and it is still saved for sentence-transformers to load.
        pooler = getattr(backbone, "pooler", None)
        if isinstance(pooler, torch.nn.Module):
            pooler.requires_grad_(False)
        self.causal = any(getattr(module, "is_causal", False) is True for module in backbone.modules())
        self.pooling = check_pooling(pooling, causal=self.causal)
        self.normalize = _check_bool(normalize, "normalize")
        self.query_prompt = query_prompt
        self.passage_prompt = passage_prompt
        self.max_seq_length = check_positive_int(max_seq_length, "max_seq_length", optional=True)
        temperature = _check_temperature(learnable_temperature)
        if temperature is None:
            self.register_parameter("log_temperature", None)
        else:
            dtype = next(backbone.parameters()).dtype
            self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(temperature), dtype=dtype))
        self._backbone_parameters = frozenset(inspect.signature(backbone.forward).parameters)

    @property
    def backbone(self) -> PreTrainedModel:
        """The transformers base model (also reachable as ``model.<base_model_prefix>``)."""
        return getattr(self, self._backbone_name)

    @property
    def config(self) -> PretrainedConfig:
        """The backbone's transformers config."""
        return self.backbone.config

    @property
    def temperature(self) -> torch.Tensor | None:
        """``exp(log_temperature)`` as a 0-dim tensor (with gradient), or None without a learnable temperature."""
        return None if self.log_temperature is None else self.log_temperature.exp()

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        *,
        query: Mapping[str, torch.Tensor] | None = None,
        passage: Mapping[str, torch.Tensor] | None = None,
        **backbone_kwargs: Any,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Embed one batch, or a batch of queries and one of passages in a single call.

        Args:
            input_ids: ``[N, T]`` token ids (left or right padded).
            attention_mask: ``[N, T]``, 1 for real tokens; all ones when None.
            query: instead of ``input_ids``: the tokenized queries (``input_ids``, ``attention_mask``,
                optionally ``token_type_ids``); needs ``passage`` too.
            passage: the tokenized passages, as ``query``.
            **backbone_kwargs: passed to the backbone with ``input_ids`` (``token_type_ids``, ...).

        Returns:
            ``[N, D]`` embeddings in the backbone's dtype (L2-normalized when ``normalize``), or
            ``(query_embeddings, passage_embeddings)`` when ``query`` and ``passage`` are given.

        Raises:
            ModelError: when neither ``input_ids`` nor both ``query`` and ``passage`` are given, or both ways are mixed.
        """
        if query is not None or passage is not None:
            if query is None or passage is None or input_ids is not None or attention_mask is not None:
                raise ModelError(
                    "BiEncoder.forward takes either input_ids (and attention_mask) or both query= and passage= "
                    "(dicts of input_ids and attention_mask), not a mix."
                )
            return self._embed(**query, **backbone_kwargs), self._embed(**passage, **backbone_kwargs)
        if input_ids is None:
            raise ModelError("BiEncoder.forward needs input_ids (and attention_mask), or both query= and passage=.")
        return self._embed(input_ids, attention_mask, **backbone_kwargs)

    def encode(
        self,
        texts: str | Sequence[str],
        tokenizer: Any,
        *,
        prompt: str | None = None,
        batch_size: int = 32,
        max_length: int | None = None,
        device: str | torch.device | None = None,
    ) -> torch.Tensor:
        """Embed texts for evaluation: no gradient, eval mode, the model's train/eval mode restored after.

        Args:
            texts: the texts (a single string counts as one).
            tokenizer: the backbone's transformers tokenizer; its padding side is kept.
            prompt: text put before each text (``model.query_prompt`` for queries); None for none.
            batch_size: texts per forward pass.
            max_length: the token limit; None for ``max_seq_length``, else the tokenizer's
                ``model_max_length`` capped at the backbone's ``max_position_embeddings`` (as sentence-transformers).
            device: where to run; the model is moved there (as sentence-transformers does). None: the model's device.

        Returns:
            ``[len(texts), D]`` float32 embeddings on that device.

        Raises:
            ModelError: for a ``batch_size`` or ``max_length`` that is not a positive int.
        """
        check_positive_int(batch_size, "batch_size")
        check_positive_int(max_length, "max_length", optional=True)
        texts = [texts] if isinstance(texts, str) else list(texts)
        if prompt:
            texts = [prompt + text for text in texts]
        if device is not None:
            self.to(device)
        limit = token_limit(tokenizer, self.config, max_length, self.max_seq_length)
        embeddings = [torch.empty(0, self.config.get_text_config().hidden_size)]
        with evaluating(self) as model_device:
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                batch = tokenizer(chunk, padding=True, truncation=True, max_length=limit, return_tensors="pt")
                embeddings.append(self(**model_inputs(batch, self.backbone.forward, model_device)).float())
        return torch.cat([part.to(model_device) for part in embeddings])

    def write_sentence_transformers_files(self, directory: str | os.PathLike) -> Path:
        """Write the sentence-transformers files describing this model's pipeline into ``directory``.

        They are modules.json (Transformer at the root, Pooling at 1_Pooling, Normalize at 2_Normalize when
        ``normalize``), sentence_bert_config.json, 1_Pooling/config.json and config_sentence_transformers.json;
        not the weights, config.json or tokenizer (``save_pretrained`` writes all of them). The prompts
        are saved under the names ``query``, ``document`` and ``passage``, with no default prompt.

        Args:
            directory: the checkpoint folder; created when missing.

        Returns:
            ``directory`` as a Path.
        """
        return write_bi_encoder_files(
            directory,
            embedding_dimension=self.config.get_text_config().hidden_size,
            pooling=self.pooling,
            normalize=self.normalize,
            query_prompt=self.query_prompt,
            passage_prompt=self.passage_prompt,
            max_seq_length=self.max_seq_length,
        )

    def save_pretrained(self, directory: str | os.PathLike, tokenizer: Any = None) -> Path:
        """Write a complete sentence-transformers folder: weights, config.json, tokenizer and the ST files.

        The weights are ``state_dict()`` as model.safetensors, keys prefixed by ``base_model_prefix``
        (``bert.embeddings...``) as the project's checkpointer saves them; ``transformers.AutoModel`` and
        sentence-transformers load them, reporting ``log_temperature`` (when learnable) as an unexpected
        key they ignore.

        Args:
            directory: the folder; created when missing.
            tokenizer: the tokenizer to save with the model; None to write none.

        Returns:
            ``directory`` as a Path.
        """
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        save_file(_plain_tensors(self.state_dict()), str(path / "model.safetensors"), metadata={"format": "pt"})
        config = copy.deepcopy(self.config)
        config.architectures = [type(self.backbone).__name__]
        config.save_pretrained(path)
        if tokenizer is not None:
            tokenizer.save_pretrained(path)
        return self.write_sentence_transformers_files(path)

    def _embed(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs: Any
    ) -> torch.Tensor:
        """Run the backbone on one batch, pool its last hidden states and normalize them when asked."""
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape[:2], dtype=torch.long, device=input_ids.device)
        if self.causal and "position_ids" in self._backbone_parameters and "position_ids" not in kwargs:
            kwargs["position_ids"] = (attention_mask.long().cumsum(dim=-1) - 1).clamp(min=0)
        if "use_cache" in self._backbone_parameters:
            kwargs.setdefault("use_cache", False)
        outputs = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        embeddings = pool(outputs[0], attention_mask, self.pooling)
        return torch.nn.functional.normalize(embeddings, p=2, dim=-1) if self.normalize else embeddings


class AutoModelBiEncoder:
    """Build BiEncoders (a transformers backbone, pooling, normalization) from a checkpoint or a config.

    Any backbone ``transformers.AutoModel`` builds works: encoders (BERT, RoBERTa, ModernBERT, ...)
    and the base model of decoder LMs (Llama, Qwen3, ...: no LM head). Use it from Python or YAML
    (``_target_: automodel.models.AutoModelBiEncoder.from_pretrained``).
    """

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        pooling: str | None = None,
        normalize: bool | None = None,
        query_prompt: str | None = None,
        passage_prompt: str | None = None,
        max_seq_length: int | None = None,
        learnable_temperature: float | None = None,
        torch_dtype: str | torch.dtype = "auto",
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        **kwargs: Any,
    ) -> BiEncoder:
        """Load a BiEncoder from a sentence-transformers folder or any transformers checkpoint.

        A sentence-transformers folder (modules.json) gives the defaults of ``pooling``, ``normalize``,
        ``max_seq_length`` and the prompts; arguments given here win. A plain checkpoint defaults to
        mean pooling and normalization. The saved ``log_temperature`` of a BiEncoder is not read back:
        ``learnable_temperature`` is the initial value (``load_state_dict`` of a checkpoint restores it).

        Args:
            pretrained_model_name_or_path: a local directory or a hub id (read from the local cache under
                ``HF_HUB_OFFLINE=1``).
            pooling: one of ``POOLING_MODES``; None for the folder's (``mean`` without one).
            normalize: L2-normalize embeddings; None for the folder's (True without one).
            query_prompt: text put before each query; None for the folder's prompt ``query``.
            passage_prompt: text put before each passage; None for the folder's ``document`` (or ``passage``).
            max_seq_length: token limit; None for the folder's.
            learnable_temperature: None, or the initial value of a trained temperature (see ``BiEncoder``).
            torch_dtype: see ``resolve_torch_dtype``; ``"auto"`` is bf16 on CUDA, fp32 on CPU.
            attn_implementation: ``"sdpa"``, ``"eager"``, ``"flash_attention_2"``, ... as transformers takes it.
            trust_remote_code: allow model code shipped with the checkpoint to run.
            **kwargs: passed to ``transformers.AutoModel.from_pretrained`` (``revision``, ...); a hub token goes
                to the download only as ``token`` (see ``AutoModelForCausalLM.from_pretrained``).

        Returns:
            The BiEncoder on the CPU unless ``device_map`` says otherwise, in eval mode as transformers leaves it.

        Raises:
            ModelError: for a path that does not exist or holds neither config.json nor modules.json, an
                unreachable hub id, an unknown pooling (or ``cls`` on a decoder-only backbone), a folder whose
                pipeline or pooling a BiEncoder does not reproduce (Dense layers, max pooling) unless
                ``pooling`` is given, or a bad dtype, ``max_seq_length`` or ``learnable_temperature``.
        """
        _check_arguments(pooling, max_seq_length, learnable_temperature)
        source = pretrained_source(pretrained_model_name_or_path, needs_one_of=("config.json", "modules.json"))
        kwargs = hub_kwargs(kwargs, "model")
        with load_errors_explained(source, "model"):
            settings = read_bi_encoder_settings(source, kwargs)
        backbone_source = source
        if settings is not None and settings.transformer_path:
            if Path(source).is_dir():
                backbone_source = str(Path(source) / settings.transformer_path)
            else:
                kwargs["subfolder"] = settings.transformer_path
        if settings is not None and pooling is None and settings.pooling_problem:
            raise ModelError(
                f"{settings.pooling_problem}; pass pooling= (one of {', '.join(POOLING_MODES)}) to fine-tune its "
                "transformer with another pooling."
            )
        backbone = _from_pretrained(
            BASE_MODEL, backbone_source, torch_dtype, attn_implementation, trust_remote_code, kwargs
        )
        defaults = settings or PLAIN_CHECKPOINT
        model = BiEncoder(
            backbone,
            pooling=_given_or(pooling, defaults.pooling),
            normalize=_given_or(normalize, defaults.normalize),
            query_prompt=_given_or(query_prompt, defaults.query_prompt),
            passage_prompt=_given_or(passage_prompt, defaults.passage_prompt),
            max_seq_length=_given_or(max_seq_length, defaults.max_seq_length),
            learnable_temperature=learnable_temperature,
        )
        return model.train(backbone.training)

    @classmethod
    def from_config(
        cls,
        config: ConfigSource,
        *,
        pooling: str = "mean",
        normalize: bool = True,
        query_prompt: str | None = None,
        passage_prompt: str | None = None,
        max_seq_length: int | None = None,
        learnable_temperature: float | None = None,
        torch_dtype: str | torch.dtype = "auto",
        attn_implementation: str = "sdpa",
        trust_remote_code: bool = False,
        seed: int | None = None,
        **overrides: Any,
    ) -> BiEncoder:
        """Build a randomly initialized BiEncoder from a backbone config.

        Args:
            config: a dict with ``model_type`` plus fields (``{"model_type": "bert", ...}``), a path to a
                directory holding config.json or to a .json file, or a ``transformers.PretrainedConfig`` (copied).
            pooling: one of ``POOLING_MODES``.
            normalize: L2-normalize embeddings.
            query_prompt: text put before each query; None for none.
            passage_prompt: text put before each passage; None for none.
            max_seq_length: token limit; None for the tokenizer's.
            learnable_temperature: None, or the initial value of a trained temperature (see ``BiEncoder``).
            torch_dtype: see ``resolve_torch_dtype``; ``"auto"`` is bf16 on CUDA, fp32 on CPU.
            attn_implementation: ``"sdpa"``, ``"eager"``, ... as transformers takes it.
            trust_remote_code: allow the code named by the config's ``auto_map`` to run.
            seed: when given, the initial weights depend only on it and the global RNG state is left as it was.
            **overrides: config fields set on top of ``config`` (``num_hidden_layers=1``).

        Returns:
            The BiEncoder, on the CPU, in training mode.

        Raises:
            ModelError: for a missing path, a config without ``model_type``, a type ``transformers.AutoModel``
                cannot build (naming the closest), an unknown pooling (or ``cls`` on a decoder-only backbone),
                or a bad dtype, ``max_seq_length`` or ``learnable_temperature``.
        """
        _check_arguments(pooling, max_seq_length, learnable_temperature)
        backbone = _from_config(
            BASE_MODEL, config, torch_dtype, attn_implementation, trust_remote_code, seed, overrides
        )
        return BiEncoder(
            backbone,
            pooling=pooling,
            normalize=normalize,
            query_prompt=query_prompt,
            passage_prompt=passage_prompt,
            max_seq_length=max_seq_length,
            learnable_temperature=learnable_temperature,
        )


def _check_arguments(pooling: str | None, max_seq_length: int | None, learnable_temperature: float | None) -> None:
    """Raise ModelError for a bad pooling name, length or temperature before anything is loaded."""
    if pooling is not None:
        check_pooling(pooling, causal=False)
    check_positive_int(max_seq_length, "max_seq_length", optional=True)
    _check_temperature(learnable_temperature)


def _given_or(argument: Any, default: Any) -> Any:
    """Return ``argument``, or ``default`` when it is None."""
    return default if argument is None else argument


def _check_bool(value: Any, name: str) -> bool:
    """Return ``value`` when it is a bool; raise ModelError naming ``name`` otherwise."""
    if not isinstance(value, bool):
        raise ModelError(f"{name} must be true or false, got {value!r}.")
    return value


def _check_temperature(value: Any) -> float | None:
    """Return ``value`` as a float when it is None or a positive number; raise ModelError otherwise."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ModelError(
            f"learnable_temperature must be null (no learned temperature) or its positive initial value "
            f"such as 0.05, got {value!r}."
        )
    return float(value)


def _plain_tensors(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return the state dict as contiguous CPU tensors, cloning any that shares storage with an earlier one."""
    tensors, seen = {}, set()
    for name, tensor in state_dict.items():
        tensor = tensor.detach().cpu().contiguous()
        pointer = tensor.untyped_storage().data_ptr()
        tensors[name] = tensor.clone() if pointer in seen else tensor
        seen.add(pointer)
    return tensors
