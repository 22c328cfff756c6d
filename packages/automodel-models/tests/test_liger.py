"""use_liger_kernel: a clear error without CUDA; on a GPU, Liger's kernels give the plain model's logits."""

from __future__ import annotations

import pytest
import torch

from automodel.models import AutoModelForCausalLM, ModelError, apply_liger_kernel, tiny_llama_config


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_without_cuda_liger_is_refused_before_anything_is_built(tmp_path):
    with pytest.raises(ModelError, match=r"use_liger_kernel needs a CUDA GPU .* remove model\.use_liger_kernel"):
        AutoModelForCausalLM.from_config(tiny_llama_config(), use_liger_kernel=True)
    with pytest.raises(ModelError, match="needs a CUDA GPU"):
        AutoModelForCausalLM.from_pretrained(tmp_path / "never-read", use_liger_kernel=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_liger_kernels_keep_the_logits_and_the_parameter_names():
    pytest.importorskip("liger_kernel")
    plain = AutoModelForCausalLM.from_config(tiny_llama_config(), seed=0).cuda()
    fast = AutoModelForCausalLM.from_config(tiny_llama_config(), seed=0, use_liger_kernel=True).cuda()
    assert fast.model.norm._get_name() == "LigerRMSNorm"
    assert list(fast.state_dict()) == list(plain.state_dict())
    ids = torch.randint(2, 500, (2, 32), device="cuda")
    with torch.no_grad():
        expected, got = plain(ids).logits.float(), fast(ids).logits.float()
    assert torch.allclose(got, expected, atol=3e-2, rtol=3e-2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_model_type_liger_does_not_cover_is_named():
    pytest.importorskip("liger_kernel")
    model = AutoModelForCausalLM.from_config({"model_type": "gpt2", "n_layer": 1, "n_embd": 32, "n_head": 2})
    with pytest.raises(ModelError, match=r"Liger has no kernels for model_type `gpt2`"):
        apply_liger_kernel(model)
