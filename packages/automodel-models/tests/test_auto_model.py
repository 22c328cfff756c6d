"""AutoModelForCausalLM: random init from a config, pretrained loading, and the errors users meet."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import transformers
from models_test_helpers import token_batch

from automodel.models import AutoModelForCausalLM, ModelError, tiny_llama_config


def _as_dict(tmp_path: Path) -> dict:
    return tiny_llama_config()


def _as_directory(tmp_path: Path) -> Path:
    (tmp_path / "config.json").write_text(json.dumps(tiny_llama_config()), encoding="utf-8")
    return tmp_path


def _as_json_file(tmp_path: Path) -> str:
    file = tmp_path / "tiny.json"
    file.write_text(json.dumps(tiny_llama_config()), encoding="utf-8")
    return str(file)


def _as_transformers_config(tmp_path: Path) -> transformers.PretrainedConfig:
    return transformers.LlamaConfig(**{k: v for k, v in tiny_llama_config().items() if k != "model_type"})


@pytest.mark.parametrize("source", [_as_dict, _as_directory, _as_json_file, _as_transformers_config])
def test_from_config_builds_an_sdpa_fp32_llama_whose_forward_runs_on_cpu(tmp_path, source):
    model = AutoModelForCausalLM.from_config(source(tmp_path))
    logits = model(token_batch()).logits
    assert isinstance(model, transformers.LlamaForCausalLM)
    assert model.config._attn_implementation == "sdpa"
    assert model.dtype == torch.float32
    assert logits.shape == (2, 8, 512)
    assert torch.isfinite(logits).all()


def test_from_config_applies_overrides_without_changing_the_given_config():
    config = transformers.LlamaConfig(**{k: v for k, v in tiny_llama_config().items() if k != "model_type"})
    model = AutoModelForCausalLM.from_config(config, num_hidden_layers=1, attn_implementation="eager")
    assert len(model.model.layers) == 1
    assert model.config._attn_implementation == "eager"
    assert config.num_hidden_layers == 2


def test_same_seed_gives_the_same_weights_and_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = AutoModelForCausalLM.from_config(tiny_llama_config(), seed=7)
    second = AutoModelForCausalLM.from_config(tiny_llama_config(), seed=7)
    other = AutoModelForCausalLM.from_config(tiny_llama_config(), seed=8)
    assert torch.equal(torch.rand(3), expected_next)
    for (name, a), b in zip(first.state_dict().items(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(first.model.embed_tokens.weight, other.model.embed_tokens.weight)


def test_save_pretrained_then_from_pretrained_gives_identical_logits(tmp_path):
    model = AutoModelForCausalLM.from_config(tiny_llama_config(), seed=0)
    model.save_pretrained(tmp_path)
    loaded = AutoModelForCausalLM.from_pretrained(tmp_path)
    assert loaded.config._attn_implementation == "sdpa"
    assert loaded.dtype == torch.float32
    batch = token_batch()
    with torch.no_grad():
        assert torch.equal(loaded(batch).logits, model.eval()(batch).logits)


def test_from_pretrained_loads_in_the_dtype_asked_for(tmp_path):
    AutoModelForCausalLM.from_config(tiny_llama_config(), seed=0).save_pretrained(tmp_path)
    assert AutoModelForCausalLM.from_pretrained(str(tmp_path), torch_dtype="bf16").dtype == torch.bfloat16


def test_unknown_model_type_names_the_closest_known_types():
    with pytest.raises(ModelError, match=r"model_type `lama`.*closest.*`llama`"):
        AutoModelForCausalLM.from_config(tiny_llama_config(model_type="lama"))


def test_model_type_without_a_causal_lm_class_is_refused():
    with pytest.raises(ModelError, match=r"model_type `t5` has no causal-LM class"):
        AutoModelForCausalLM.from_config({"model_type": "t5"})


def test_config_dict_without_model_type_says_to_add_one():
    fields = {k: v for k, v in tiny_llama_config().items() if k != "model_type"}
    expected = 'the config dict has no `model_type`; add one such as `"model_type": "llama"`'
    with pytest.raises(ModelError, match=re.escape(expected)):
        AutoModelForCausalLM.from_config(fields)


def test_missing_config_path_is_named(tmp_path):
    missing = tmp_path / "nowhere" / "config.json"
    with pytest.raises(ModelError, match=re.escape(f"config path {missing} does not exist; check the path")):
        AutoModelForCausalLM.from_config(missing)


def test_missing_local_model_directory_is_named_not_an_os_error(tmp_path):
    missing = tmp_path / "no-model"
    with pytest.raises(ModelError, match=re.escape(f"local path {missing} does not exist; check the path")):
        AutoModelForCausalLM.from_pretrained(str(missing))


def test_directory_without_config_json_says_what_it_lacks(tmp_path):
    with pytest.raises(ModelError, match=re.escape(f"directory {tmp_path} holds none of config.json")):
        AutoModelForCausalLM.from_pretrained(tmp_path)


def test_uncached_hub_id_offline_mentions_hf_hub_offline_and_the_path():
    with pytest.raises(ModelError) as caught:
        AutoModelForCausalLM.from_pretrained("automodel-tests/no-such-model")
    message = str(caught.value)
    assert "`automodel-tests/no-such-model`" in message
    assert "HF_HUB_OFFLINE=1" in message
    assert "check the path" in message
    assert "\n" not in message


def test_config_that_is_neither_dict_path_nor_config_is_refused():
    with pytest.raises(ModelError, match=r"config must be a dict with `model_type`.*not list"):
        AutoModelForCausalLM.from_config([("model_type", "llama")])
