"""QLoRA: 4-bit NF4 base weights under LoRA on CUDA, and a clear error where CUDA or bitsandbytes is missing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from peft_test_helpers import MODELS, lm_loss, logits, token_ids, train

from automodel.peft import (
    LoRAConfig,
    PeftError,
    QuantizationConfig,
    apply_lora,
    load_adapter,
    lora_modules,
    merge_lora,
    quantize_base_weights,
    save_adapter,
)


def similarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two logit tensors: about 0.99 for a model and its 4-bit copy, about 0 across seeds."""
    return torch.nn.functional.cosine_similarity(a.flatten().float(), b.flatten().float(), dim=0).item()


def test_the_config_takes_bitsandbytes_names_and_refuses_what_it_cannot_do() -> None:
    config = QuantizationConfig(load_in_4bit=True, quant_type="nf4", compute_dtype="bf16")
    assert (config.quant_type, config.compute_dtype, config.double_quant) == ("nf4", torch.bfloat16, True)
    assert QuantizationConfig(quant_type="fp4", compute_dtype="float16").compute_dtype is torch.float16
    with pytest.raises(PeftError, match="4-bit base weights only"):
        QuantizationConfig(load_in_4bit=False)
    with pytest.raises(PeftError, match="quant_type must be one of \\('nf4', 'fp4'\\)"):
        QuantizationConfig(quant_type="int4")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_without_cuda_quantizing_is_a_peft_error_that_says_so() -> None:
    model = MODELS["llama"]()
    with pytest.raises(PeftError, match="QLoRA \\(4-bit base weights\\) needs a CUDA GPU and none is available"):
        quantize_base_weights(model, QuantizationConfig())
    assert type(model.model.layers[0].self_attn.q_proj) is torch.nn.Linear  # nothing was changed


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="QLoRA needs CUDA")
@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="bitsandbytes is not installed")
@pytest.mark.parametrize("use_dora", [False, True], ids=["qlora", "qdora"])
def test_lora_trains_on_nf4_base_weights_and_its_adapter_loads_on_the_full_model(
    use_dora: bool, tmp_path: Path
) -> None:
    import bitsandbytes as bnb

    full = MODELS["llama"]().cuda()
    model = quantize_base_weights(MODELS["llama"](), QuantizationConfig(compute_dtype="fp32")).cuda()
    apply_lora(model, LoRAConfig(r=8, alpha=16, target_modules=["*_proj"], use_dora=use_dora))
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer.base_layer, bnb.nn.Linear4bit) and layer.base_layer.weight.quant_type == "nf4"
    assert type(model.lm_head) is torch.nn.Linear
    assert {m.lora_A.weight.dtype for m in lora_modules(model).values()} == {torch.float32}
    ids = token_ids(length=16).cuda()
    assert similarity(logits(model, ids), logits(full, ids)) > 0.95  # 4-bit rounding gives about 0.99
    losses = train(model, lambda: lm_loss(model, ids), steps=6, lr=1e-2)
    assert losses[-1] < losses[0] - 0.05
    full = load_adapter(full, save_adapter(model, tmp_path))
    assert similarity(logits(model, ids), logits(full, ids)) > 0.95
    with pytest.raises(PeftError, match="Cannot merge LoRA into 4-bit quantized base weights"):
        merge_lora(model)
