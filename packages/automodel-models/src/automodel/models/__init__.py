"""automodel.models: Hugging Face causal LMs and tokenizers with automodel's defaults, offline-friendly.

``AutoModelForCausalLM.from_pretrained`` / ``from_config`` build plain transformers models with
SDPA attention and bf16 on CUDA (fp32 on CPU); ``load_tokenizer`` guarantees a pad token;
``build_tokenizer`` trains a small byte-level BPE tokenizer with a ChatML template offline;
``training_flops_per_token`` counts FLOPs for MFU; ``apply_liger_kernel`` (or
``use_liger_kernel=True``) swaps in Liger's Triton kernels on CUDA; ``tiny_llama_config`` is the tiny test model.
Every user mistake is a ``ModelError`` naming the value or path and what to do.
"""

from automodel.models.auto_model import AutoModelForCausalLM
from automodel.models.chat_template import CHATML_TEMPLATE
from automodel.models.dtypes import resolve_torch_dtype
from automodel.models.errors import ModelError
from automodel.models.flops import training_flops_per_token
from automodel.models.liger import apply_liger_kernel
from automodel.models.model_config import build_model_config
from automodel.models.tiny_configs import tiny_llama_config
from automodel.models.tokenizer_loading import load_tokenizer
from automodel.models.tokenizer_training import build_tokenizer

__version__ = "0.3.0"

__all__ = [
    "CHATML_TEMPLATE",
    "AutoModelForCausalLM",
    "ModelError",
    "apply_liger_kernel",
    "build_model_config",
    "build_tokenizer",
    "load_tokenizer",
    "resolve_torch_dtype",
    "tiny_llama_config",
    "training_flops_per_token",
]
