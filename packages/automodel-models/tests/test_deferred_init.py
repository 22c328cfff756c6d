"""Models built on the meta device inside defer_weights() and given their weights by materialize_model, on one
process (the multi-process layouts are tested in automodel-recipes-llm's test_sharded_loading)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from automodel.models import (
    AutoModelForCausalLM,
    ModelError,
    defer_weights,
    materialize_model,
    pending_weights,
    tiny_llama_config,
)


@pytest.mark.parametrize("seed", [3, None], ids=["seeded", "global-generator"])
def test_a_model_from_a_config_gets_the_weights_and_leaves_the_generator_as_a_real_build(seed) -> None:
    torch.manual_seed(0)
    expected = AutoModelForCausalLM.from_config(tiny_llama_config(), seed=seed)
    generator_after = torch.random.get_rng_state()
    torch.manual_seed(0)
    with defer_weights():
        model = AutoModelForCausalLM.from_config(tiny_llama_config(), seed=seed)
    assert all(parameter.is_meta for parameter in model.parameters())
    assert torch.equal(torch.random.get_rng_state(), generator_after)
    report = materialize_model(model, "cpu")
    assert report.tensors_initialized == len(dict(model.named_parameters())) and report.bytes_read == 0
    for name, value in expected.state_dict().items():
        assert torch.equal(model.state_dict()[name], value), name
    assert pending_weights(model) is None and materialize_model(model, "cpu") is None


def test_a_pretrained_model_reads_its_files_and_keeps_its_generation_config(tmp_path) -> None:
    expected = AutoModelForCausalLM.from_config(tiny_llama_config(), seed=1)
    expected.generation_config.max_new_tokens = 7
    expected.save_pretrained(tmp_path)
    with defer_weights():
        model = AutoModelForCausalLM.from_pretrained(tmp_path)
    report = materialize_model(model, "cpu")
    assert report.bytes_read == report.bytes_in_files > 0
    assert model.generation_config.max_new_tokens == 7 and not model.training
    ids = torch.arange(12).reshape(2, 6)
    torch.testing.assert_close(model(input_ids=ids).logits, expected.eval()(input_ids=ids).logits)


def test_full_builds_the_whole_model_even_inside_the_block(tmp_path) -> None:
    with defer_weights():
        model = AutoModelForCausalLM.from_config(tiny_llama_config(), seed=1, load_strategy="full")
    assert not any(parameter.is_meta for parameter in model.parameters()) and pending_weights(model) is None


def test_an_unknown_strategy_is_refused() -> None:
    with pytest.raises(ModelError, match="load_strategy 'sharded_fast' is not one of sharded, rank0_broadcast, full"):
        AutoModelForCausalLM.from_config(tiny_llama_config(), load_strategy="sharded_fast")


def test_files_missing_a_weight_under_its_name_are_loaded_whole_with_a_warning(tmp_path) -> None:
    source = AutoModelForCausalLM.from_config(tiny_llama_config(), seed=1)
    source.config.save_pretrained(tmp_path)
    state = {
        name: value
        for name, value in source.state_dict().items()
        if "layers.1.mlp" not in name and name != "lm_head.weight"  # tied: saved once, as the embedding
    }
    save_file({name: value.contiguous() for name, value in state.items()}, tmp_path / "model.safetensors")
    with defer_weights(), pytest.warns(UserWarning, match=r"do not hold model\.layers\.1\.mlp\..*load_strategy: full"):
        model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert pending_weights(model) is None and not any(parameter.is_meta for parameter in model.parameters())
    assert torch.equal(model.model.norm.weight, source.model.norm.weight)


def test_a_checkpoint_without_safetensors_is_loaded_whole_with_a_warning(tmp_path) -> None:
    expected = AutoModelForCausalLM.from_config(tiny_llama_config(), seed=1)
    expected.config.save_pretrained(tmp_path)
    torch.save(expected.state_dict(), tmp_path / "pytorch_model.bin")
    with defer_weights(), pytest.warns(UserWarning, match="loads the whole model with transformers"):
        model = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert pending_weights(model) is None
    assert torch.equal(model.model.embed_tokens.weight, expected.model.embed_tokens.weight)


def test_a_parameter_nothing_fills_is_named_with_what_to_do(tmp_path) -> None:
    AutoModelForCausalLM.from_config(tiny_llama_config(), seed=1).save_pretrained(tmp_path)
    with defer_weights():
        model = AutoModelForCausalLM.from_pretrained(tmp_path)
        model.model.extra = torch.nn.Parameter(torch.empty(2, 2, device="meta"))  # no initialisation at all
    with pytest.raises(ModelError, match=r"left model\.extra without values.*load_strategy: full"):
        materialize_model(model, "cpu")


def test_whole_tensors_are_the_files_mapped_pages_and_writing_them_leaves_the_files_alone(tmp_path) -> None:
    from safetensors.torch import load_file

    AutoModelForCausalLM.from_config(tiny_llama_config(), seed=1).save_pretrained(tmp_path)
    before = load_file(tmp_path / "model.safetensors")
    with defer_weights():
        model = AutoModelForCausalLM.from_pretrained(tmp_path)
    materialize_model(model, "cpu")
    assert model.lm_head.weight is model.model.embed_tokens.weight
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    after = load_file(tmp_path / "model.safetensors")
    assert all(torch.equal(before[name], after[name]) for name in before)
    assert torch.equal(model.model.norm.weight, before["model.norm.weight"] + 1.0)
