"""automodel.models: Hugging Face causal LMs, vision-language models, retrieval encoders, tokenizers and processors.

``AutoModelForCausalLM`` and ``AutoModelForImageTextToText`` (``from_pretrained`` / ``from_config``)
build plain transformers models with SDPA attention and bf16 on CUDA (fp32 on CPU);
``load_tokenizer`` and ``load_processor`` guarantee a pad token;
``build_tokenizer`` trains a small byte-level BPE tokenizer with a ChatML template offline;
``training_flops_per_token`` counts FLOPs for MFU; ``apply_liger_kernel`` (or
``use_liger_kernel=True``) swaps in Liger's Triton kernels on CUDA; ``tiny_llama_config`` is the tiny test model,
``tiny_vlm_config`` and ``build_tiny_vlm`` (model and processor, written offline) the tiny vision-language one.
For retrieval, ``AutoModelBiEncoder`` builds a ``BiEncoder`` (any ``transformers.AutoModel`` backbone, pooling
from ``POOLING_MODES``, normalization, prompts, an optional learnable temperature) whose ``save_pretrained``
writes a folder sentence-transformers loads with the same embeddings; ``AutoModelCrossEncoder`` builds a
transformers sequence-classification reranker, ``cross_encoder_scores`` scores (query, passage) pairs and
``write_cross_encoder_files`` makes its folder a sentence-transformers ``CrossEncoder`` with the same scores.
Every user mistake is a ``ModelError`` naming the value or path and what to do.
"""

from automodel.models.auto_model import AutoModelForCausalLM, AutoModelForImageTextToText
from automodel.models.bi_encoder import AutoModelBiEncoder, BiEncoder
from automodel.models.chat_template import CHATML_TEMPLATE, CHATML_VLM_TEMPLATE, IMAGE_TOKEN
from automodel.models.cross_encoder import AutoModelCrossEncoder, cross_encoder_scores, write_cross_encoder_files
from automodel.models.deferred_init import LOAD_STRATEGIES, defer_weights, pending_weights
from automodel.models.diffusion_encoding import (
    DenoiserForTraining,
    encode_image_posteriors,
    encode_images,
    encode_prompts,
    pipeline_kind,
    sample_images,
    sampling_arguments,
)
from automodel.models.diffusion_pipeline import (
    MODEL_INDEX,
    AutoDiffusionPipeline,
    DiffusionPipelineForTraining,
    read_model_index,
)
from automodel.models.dtypes import resolve_torch_dtype
from automodel.models.errors import ModelError
from automodel.models.flops import training_flops_per_token
from automodel.models.liger import apply_liger_kernel
from automodel.models.materialize import LoadReport, materialize_model
from automodel.models.model_config import build_model_config
from automodel.models.pooling import POOLING_MODES
from automodel.models.processor_loading import check_processor_matches, load_processor
from automodel.models.tiny_configs import tiny_llama_config, tiny_vlm_config
from automodel.models.tiny_diffusion import (
    build_tiny_sd3_pipeline,
    tiny_sd3_transformer_config,
    tiny_vae,
    word_level_tokenizer,
)
from automodel.models.tiny_vlm import build_tiny_vlm
from automodel.models.tokenizer_loading import load_tokenizer
from automodel.models.tokenizer_training import build_tokenizer

__version__ = "0.8.1"

__all__ = [
    "CHATML_TEMPLATE",
    "CHATML_VLM_TEMPLATE",
    "IMAGE_TOKEN",
    "LOAD_STRATEGIES",
    "MODEL_INDEX",
    "POOLING_MODES",
    "AutoDiffusionPipeline",
    "AutoModelBiEncoder",
    "AutoModelCrossEncoder",
    "AutoModelForCausalLM",
    "AutoModelForImageTextToText",
    "BiEncoder",
    "DenoiserForTraining",
    "DiffusionPipelineForTraining",
    "LoadReport",
    "ModelError",
    "apply_liger_kernel",
    "build_model_config",
    "build_tiny_sd3_pipeline",
    "build_tiny_vlm",
    "build_tokenizer",
    "check_processor_matches",
    "cross_encoder_scores",
    "defer_weights",
    "encode_image_posteriors",
    "encode_images",
    "encode_prompts",
    "load_processor",
    "load_tokenizer",
    "materialize_model",
    "pending_weights",
    "pipeline_kind",
    "read_model_index",
    "resolve_torch_dtype",
    "sample_images",
    "sampling_arguments",
    "tiny_llama_config",
    "tiny_sd3_transformer_config",
    "tiny_vae",
    "tiny_vlm_config",
    "training_flops_per_token",
    "word_level_tokenizer",
    "write_cross_encoder_files",
]
