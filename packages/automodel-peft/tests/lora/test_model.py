"""apply_lora / merge_lora / unmerge_lora / remove_lora on tiny Llama and Qwen2 models, checked against peft."""

from __future__ import annotations

from pathlib import Path

import peft
import pytest
import torch
from peft_test_helpers import ATTENTION, MLP, MODELS, lm_loss, logits, perturb_adapters, token_ids, train
from torch import nn
from transformers import AutoModelForCausalLM

from automodel.peft import (
    LoRAConfig,
    LoRALinear,
    PeftError,
    apply_lora,
    lora_modules,
    merge_lora,
    remove_lora,
    trainable_parameter_count,
    unmerge_lora,
)

COUNT_CASES = {
    "attention lora": ({"target_modules": ["q_proj", "v_proj"]}, {"target_modules": ["q_proj", "v_proj"]}),
    "all linear lora": ({"match_all_linear": True}, {"target_modules": "all-linear"}),
    "mlp dora": ({"target_modules": MLP, "use_dora": True}, {"target_modules": MLP, "use_dora": True}),
    "all linear dora rank 2": (
        {"match_all_linear": True, "use_dora": True, "r": 2},
        {"target_modules": "all-linear", "use_dora": True, "r": 2},
    ),
}


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("ours, theirs", COUNT_CASES.values(), ids=COUNT_CASES.keys())
def test_only_adapters_train_and_their_count_equals_peft(family: str, ours: dict, theirs: dict) -> None:
    model = apply_lora(MODELS[family](), LoRAConfig(**{"r": 4, **ours}))
    reference = peft.get_peft_model(MODELS[family](), peft.LoraConfig(**{"r": 4, "task_type": "CAUSAL_LM", **theirs}))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(
        name.endswith(("lora_A.weight", "lora_B.weight", "lora_magnitude_vector")) for name in trainable
    )
    assert trainable_parameter_count(model) == reference.get_nb_trainable_parameters()[0]
    assert sum(p.numel() for p in model.parameters()) == reference.get_nb_trainable_parameters()[1]
    assert "lm_head" not in " ".join(lora_modules(model))


@pytest.mark.parametrize("family", MODELS)
def test_a_few_adamw_steps_lower_the_loss_and_change_only_adapter_weights(family: str) -> None:
    model = apply_lora(MODELS[family](), LoRAConfig(r=8, alpha=16, target_modules=ATTENTION + MLP, dropout=0.05))
    frozen = {name: p.detach().clone() for name, p in model.named_parameters() if not p.requires_grad}
    ids = token_ids(length=16)
    losses = train(model, lambda: lm_loss(model, ids), steps=6, lr=1e-2)
    assert losses[-1] < losses[0] - 0.05
    for name, parameter in model.named_parameters():
        if name in frozen:
            assert torch.equal(parameter, frozen[name]), name
    assert all(module.lora_B.weight.abs().sum() > 0 for module in lora_modules(model).values())


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_merged_logits_equal_adapted_logits_and_unmerge_restores_the_base_weights(family: str, use_dora: bool) -> None:
    model = apply_lora(MODELS[family](), LoRAConfig(r=4, alpha=16, match_all_linear=True, use_dora=use_dora))
    perturb_adapters(model)
    ids = token_ids()
    base_weights = {name: p.detach().clone() for name, p in model.named_parameters() if "base_layer" in name}
    adapted = logits(model, ids)
    assert merge_lora(model) is model
    assert all(module.merged for module in lora_modules(model).values())
    torch.testing.assert_close(logits(model, ids), adapted, atol=1e-5, rtol=1e-5)
    assert unmerge_lora(model) is model
    torch.testing.assert_close(logits(model, ids), adapted, atol=1e-5, rtol=1e-5)
    for name, parameter in model.named_parameters():
        if name in base_weights:
            torch.testing.assert_close(parameter, base_weights[name], atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_merge_then_remove_gives_a_plain_model_that_saves_and_reloads_with_transformers(
    use_dora: bool, tmp_path: Path
) -> None:
    model = apply_lora(MODELS["qwen2"](), LoRAConfig(r=4, target_modules=["*_proj"], use_dora=use_dora))
    perturb_adapters(model)
    ids = token_ids()
    adapted = logits(model, ids)
    plain = remove_lora(merge_lora(model))
    assert not lora_modules(plain)
    assert all(type(module) is nn.Linear for module in plain.modules() if isinstance(module, nn.Linear))
    assert set(plain.state_dict()) == set(MODELS["qwen2"]().state_dict())
    plain.save_pretrained(tmp_path)
    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    torch.testing.assert_close(logits(reloaded, ids), adapted, atol=1e-5, rtol=1e-5)


def test_remove_without_merge_drops_the_adapters() -> None:
    model = apply_lora(MODELS["llama"](), LoRAConfig(target_modules=["q_proj"]))
    perturb_adapters(model)
    ids = token_ids()
    torch.testing.assert_close(logits(remove_lora(model), ids), logits(MODELS["llama"](), ids))


def test_apply_keeps_train_or_eval_mode_and_wraps_the_original_linear() -> None:
    model = MODELS["llama"]()
    q_proj = model.model.layers[0].self_attn.q_proj
    apply_lora(model, LoRAConfig(target_modules=["q_proj"], dropout=0.5))
    layer = model.model.layers[0].self_attn.q_proj
    assert isinstance(layer, LoRALinear) and layer.base_layer is q_proj and layer.weight is q_proj.weight
    assert not layer.training
    torch.testing.assert_close(logits(model, token_ids()), logits(model, token_ids()))  # no dropout in eval


def test_applying_twice_or_merging_a_model_without_adapters_is_an_error() -> None:
    model = apply_lora(MODELS["llama"](), LoRAConfig(target_modules=["q_proj"]))
    with pytest.raises(PeftError, match="already has LoRA adapters; call remove_lora"):
        apply_lora(model, LoRAConfig(target_modules=["v_proj"]))
    for action in (merge_lora, unmerge_lora, remove_lora):
        with pytest.raises(PeftError, match="has no LoRA adapters"):
            action(MODELS["llama"]())
