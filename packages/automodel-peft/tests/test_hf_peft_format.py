"""Adapters in the HF PEFT format: peft loads ours, we load peft's, with equal logits; bad adapters are errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import peft
import pytest
import torch
from peft_test_helpers import MLP, MODELS, logits, perturb_adapters, tiny_llama, token_ids, train
from safetensors.torch import load_file, save_file

from automodel.peft import (
    LoRAConfig,
    PeftError,
    apply_lora,
    load_adapter,
    lora_modules,
    portable_base_reference,
    save_adapter,
)

ADAPTER_CASES = {
    "lora": {"target_modules": ["q_proj", "v_proj", "down_proj"]},
    "rslora with dropout": {"target_modules": ["*_proj"], "use_rslora": True, "dropout": 0.1},
    "dora": {"target_modules": ["q_proj", "o_proj", *MLP], "use_dora": True},
    "dora rslora all linear": {"match_all_linear": True, "use_dora": True, "use_rslora": True},
    "regex with exclusion": {
        "target_modules": [r"re:.*\.(k|v)_proj"],
        "exclude_modules": ["layers.0.self_attn.k_proj"],
    },
}


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("kwargs", ADAPTER_CASES.values(), ids=ADAPTER_CASES.keys())
def test_peft_loads_our_adapter_with_equal_logits(family: str, kwargs: dict, tmp_path: Path) -> None:
    model = apply_lora(MODELS[family](), LoRAConfig(**{"r": 4, "alpha": 16, **kwargs}))
    perturb_adapters(model)
    ids = token_ids()
    save_adapter(model, tmp_path, base_model_name_or_path="tiny/base")
    loaded = peft.PeftModel.from_pretrained(MODELS[family](), tmp_path)
    torch.testing.assert_close(logits(loaded, ids), logits(model, ids), atol=1e-5, rtol=1e-5)
    theirs = {name.removeprefix("base_model.model.") for name, m in loaded.named_modules() if hasattr(m, "lora_A")}
    assert theirs == set(lora_modules(model))
    assert isinstance(loaded, peft.PeftModelForCausalLM)
    assert loaded.peft_config["default"].base_model_name_or_path == "tiny/base"


def test_trained_dora_adapter_round_trips_through_peft(tmp_path: Path) -> None:
    model = apply_lora(MODELS["qwen2"](), LoRAConfig(r=4, target_modules=["*_proj"], use_dora=True))
    ids = token_ids(length=12)
    train(model, lambda: model(input_ids=ids, labels=ids).loss, steps=3, lr=1e-2)
    save_adapter(model, tmp_path)
    loaded = peft.PeftModel.from_pretrained(MODELS["qwen2"](), tmp_path)
    torch.testing.assert_close(logits(loaded, ids), logits(model, ids), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_our_files_have_the_keys_and_config_fields_peft_writes(use_dora: bool, tmp_path: Path) -> None:
    theirs = peft.get_peft_model(
        tiny_llama(),
        peft.LoraConfig(
            r=4,
            lora_alpha=16,
            lora_dropout=0.05,
            target_modules=["q_proj", "up_proj"],
            use_dora=use_dora,
            task_type="CAUSAL_LM",
        ),
    )
    theirs.save_pretrained(tmp_path / "theirs")
    ours = apply_lora(
        tiny_llama(), LoRAConfig(r=4, alpha=16, dropout=0.05, target_modules=["q_proj", "up_proj"], use_dora=use_dora)
    )
    save_adapter(ours, tmp_path / "ours")
    their_weights = load_file(tmp_path / "theirs" / "adapter_model.safetensors")
    our_weights = load_file(tmp_path / "ours" / "adapter_model.safetensors")
    assert {k: v.shape for k, v in our_weights.items()} == {k: v.shape for k, v in their_weights.items()}
    their_config = json.loads((tmp_path / "theirs" / "adapter_config.json").read_text())
    our_config = json.loads((tmp_path / "ours" / "adapter_config.json").read_text())
    assert set(our_config) <= set(their_config)
    fields = [
        "peft_type",
        "task_type",
        "r",
        "lora_alpha",
        "lora_dropout",
        "use_dora",
        "use_rslora",
        "bias",
        "fan_in_fan_out",
        "inference_mode",
        "modules_to_save",
        "init_lora_weights",
        "exclude_modules",
    ]
    assert {f: our_config[f] for f in fields} == {f: their_config[f] for f in fields}
    assert our_config["target_modules"] == sorted(their_config["target_modules"]) == ["q_proj", "up_proj"]


@pytest.mark.parametrize("family", MODELS)
@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_we_load_an_adapter_saved_by_peft_with_equal_logits(family: str, use_dora: bool, tmp_path: Path) -> None:
    config = peft.LoraConfig(
        r=4,
        lora_alpha=8,
        target_modules=["k_proj", "o_proj", "gate_proj"],
        use_dora=use_dora,
        use_rslora=use_dora,
        task_type="CAUSAL_LM",
    )
    theirs = peft.get_peft_model(MODELS[family](), config)
    perturb_adapters(theirs)
    theirs.save_pretrained(tmp_path)
    ids = token_ids()
    ours = load_adapter(MODELS[family](), tmp_path)
    torch.testing.assert_close(logits(ours, ids), logits(theirs, ids), atol=1e-5, rtol=1e-5)
    layers = lora_modules(ours)
    assert len(layers) == 6 and {m.use_dora for m in layers.values()} == {use_dora}
    assert all(p.requires_grad == ("lora" in name) for name, p in ours.named_parameters())


def test_an_adapter_saved_and_loaded_by_us_continues_training(tmp_path: Path) -> None:
    model = apply_lora(MODELS["llama"](), LoRAConfig(r=4, target_modules=["q_proj", "v_proj"], dropout=0.1))
    ids = token_ids(length=12)
    train(model, lambda: model(input_ids=ids, labels=ids).loss, steps=3)
    save_adapter(model, tmp_path)
    loaded = load_adapter(MODELS["llama"](), tmp_path)
    torch.testing.assert_close(logits(loaded, ids), logits(model, ids))
    assert next(iter(lora_modules(loaded).values())).dropout_p == 0.1
    losses = train(loaded, lambda: loaded(input_ids=ids, labels=ids).loss, steps=3)
    assert losses[-1] < losses[0]


def test_base_model_name_defaults_to_the_models_config_and_task_type_is_checked(tmp_path: Path) -> None:
    model = apply_lora(MODELS["llama"](), LoRAConfig(target_modules=["q_proj"]))
    model.config.name_or_path = "meta-llama/Llama-3.2-1B"
    config = json.loads((save_adapter(model, tmp_path, task_type=None) / "adapter_config.json").read_text())
    assert (config["base_model_name_or_path"], config["task_type"]) == ("meta-llama/Llama-3.2-1B", None)
    with pytest.raises(PeftError, match="task_type must be one of"):
        save_adapter(model, tmp_path, task_type="causal-lm")
    with pytest.raises(PeftError, match="no LoRA adapters to save"):
        save_adapter(MODELS["llama"](), tmp_path)


def test_auto_peft_loads_the_adapter_from_another_directory_and_after_the_adapter_moves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base = tiny_llama()
    (tmp_path / "work").mkdir()
    base.save_pretrained(tmp_path / "work" / "base")
    model = apply_lora(tiny_llama(), LoRAConfig(r=4, alpha=8, target_modules=["q_proj", "v_proj"]))
    perturb_adapters(model)
    monkeypatch.chdir(tmp_path / "work")
    save_adapter(model, "run/adapter", base_model_name_or_path="base")  # both relative to the working directory
    recorded = json.loads((tmp_path / "work" / "run" / "adapter" / "adapter_config.json").read_text())
    assert recorded["base_model_name_or_path"] == str(tmp_path / "work" / "base")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    (tmp_path / "work" / "run").rename(tmp_path / "elsewhere" / "moved")
    loaded = peft.AutoPeftModelForCausalLM.from_pretrained("moved/adapter")
    torch.testing.assert_close(logits(loaded, token_ids()), logits(model, token_ids()))
    assert not torch.allclose(logits(base, token_ids()), logits(model, token_ids()))


def test_a_hub_id_is_recorded_as_given() -> None:
    assert portable_base_reference("meta-llama/Llama-3.2-1B") == "meta-llama/Llama-3.2-1B"
    assert portable_base_reference(None) is None


def _saved(tmp_path: Path) -> Path:
    """A valid adapter directory (LoRA r=4 on q_proj of the tiny Llama)."""
    return save_adapter(apply_lora(tiny_llama(), LoRAConfig(r=4, target_modules=["q_proj"])), tmp_path / "adapter")


def _edit_config(folder: Path, **changes: object) -> None:
    path = folder / "adapter_config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def _edit_weights(
    folder: Path, rename: tuple[str, str] | None = None, shape_of_a: tuple[int, int] | None = None
) -> None:
    path = folder / "adapter_model.safetensors"
    weights = load_file(path)
    if rename:
        weights = {key.replace(*rename): value for key, value in weights.items()}
    if shape_of_a:
        weights = {k: torch.zeros(shape_of_a) if k.endswith("lora_A.weight") else v for k, v in weights.items()}
    save_file(weights, path)


BROKEN_ADAPTERS = {
    "no adapter_config.json": (lambda d: (d / "adapter_config.json").unlink(), "adapter_config.json is missing"),
    "only a pickle": (
        lambda d: (d / "adapter_model.safetensors").rename(d / "adapter_model.bin"),
        "adapter_model.bin is a pickle, which is never loaded",
    ),
    "another peft method": (lambda d: _edit_config(d, peft_type="IA3"), "peft_type is 'IA3'; only LORA"),
    "modules_to_save": (lambda d: _edit_config(d, modules_to_save=["lm_head"]), "sets modules_to_save, which"),
    "trained bias": (lambda d: _edit_config(d, bias="all"), "sets bias, which automodel.peft does not implement"),
    "dora flag without magnitudes": (lambda d: _edit_config(d, use_dora=True), "use_dora=True needs"),
    "a module the model lacks": (
        lambda d: _edit_weights(d, rename=("layers.1", "layers.7")),
        "weights for `model.layers.7.self_attn.q_proj`, which is not an nn.Linear",
    ),
    "a rank that does not fit": (
        lambda d: _edit_weights(d, shape_of_a=(4, 16)),
        r"lora_A weight of `model\.layers\.0\.self_attn\.q_proj` has shape \(4, 16\) but this model with r=4",
    ),
    "an r the weights do not have": (
        lambda d: _edit_config(d, r=8),
        r"has shape \(4, 32\) but this model with r=8 needs \(8, 32\)",
    ),
    "an embedding adapter": (
        lambda d: _edit_weights(d, rename=("self_attn.q_proj.lora_A", "self_attn.q_proj.lora_embedding_A")),
        "unexpected key `base_model.model.model.layers.0.self_attn.q_proj.lora_embedding_A",
    ),
}


@pytest.mark.parametrize("break_it, message", BROKEN_ADAPTERS.values(), ids=BROKEN_ADAPTERS.keys())
def test_an_adapter_we_cannot_apply_is_a_peft_error_that_leaves_the_model_alone(
    break_it: Callable[[Path], object], message: str, tmp_path: Path
) -> None:
    folder = _saved(tmp_path)
    break_it(folder)
    model = tiny_llama()
    with pytest.raises(PeftError, match=message):
        load_adapter(model, folder)
    assert not lora_modules(model)
    assert all(p.requires_grad for p in model.parameters())


def test_loading_onto_a_model_that_already_has_adapters_is_an_error(tmp_path: Path) -> None:
    model = apply_lora(tiny_llama(), LoRAConfig(target_modules=["v_proj"]))
    with pytest.raises(PeftError, match="already has LoRA adapters; call remove_lora"):
        load_adapter(model, _saved(tmp_path))
