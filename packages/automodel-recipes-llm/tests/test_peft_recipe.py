"""train_ft with a `peft:` section: adapters in HF PEFT format, a merged model, frozen base, exact resume."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from recipe_test_helpers import read_jsonl, run_recipe, sft_config
from transformers import AutoModelForCausalLM

from automodel.config import ConfigError
from automodel.recipes.llm.train_ft import TrainFinetuneRecipeForNextTokenPrediction

LORA = {"_target_": "automodel.peft.LoRAConfig", "dim": 16, "alpha": 16, "match_all_linear": True}
STEPS = {"global_batch_size": 16, "local_batch_size": 8, "max_steps": 6, "checkpoint_interval": 3, "log_interval": 1}


@pytest.fixture(scope="module")
def lora_run(task, tmp_path_factory):
    out = tmp_path_factory.mktemp("lora")
    cfg = sft_config(task, out, peft={**LORA, "save_merged": True}, step_scheduler=STEPS, validation_dataset=None)
    return run_recipe(cfg), out


def _logits(model, ids):
    with torch.no_grad():
        return model.eval()(ids).logits


def test_peft_loads_the_adapter_onto_the_saved_base_with_equal_logits(lora_run):
    recipe, out = lora_run
    step = out / "step_000006"
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (step / "model").iterdir()}
    assert not (step / "model" / "model.safetensors").exists()
    base = AutoModelForCausalLM.from_pretrained(out / "base_model")
    adapted = PeftModel.from_pretrained(base, step / "model")
    ids = torch.tensor([[5, 17, 42, 9, 3, 77]])
    assert torch.allclose(_logits(adapted, ids), _logits(recipe.model, ids), atol=1e-5)


def test_the_merged_model_loads_in_transformers_with_equal_logits(lora_run):
    recipe, out = lora_run
    merged = AutoModelForCausalLM.from_pretrained(out / "step_000006" / "merged")
    ids = torch.tensor([[5, 17, 42, 9, 3, 77]])
    assert torch.allclose(_logits(merged, ids), _logits(recipe.model, ids), atol=1e-5)


def test_only_adapters_train_and_the_base_stays_as_saved(lora_run):
    recipe, out = lora_run
    base = AutoModelForCausalLM.from_pretrained(out / "base_model").state_dict()
    for name, tensor in recipe.model.state_dict().items():
        if "lora_" not in name:
            assert torch.equal(tensor, base[name.replace(".base_layer.", ".")]), name
    trainable = [n for n, p in recipe.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    losses = [r["loss"] for r in read_jsonl(out / "training.jsonl")]
    assert losses[-1] < losses[0]


def test_a_resumed_lora_run_is_exact(task, lora_run, tmp_path):
    recipe, out = lora_run
    resumed = run_recipe(
        sft_config(
            task,
            tmp_path,
            peft=LORA,
            step_scheduler=STEPS,
            validation_dataset=None,
            restore_from={"path": str(out / "step_000003")},
        )
    )
    before = {r["step"]: r["loss"] for r in read_jsonl(out / "training.jsonl")}
    after = {r["step"]: r["loss"] for r in read_jsonl(tmp_path / "training.jsonl")}
    assert all(after[s] == before[s] for s in (4, 5, 6))
    for name, tensor in recipe.model.state_dict().items():
        assert torch.equal(tensor, resumed.model.state_dict()[name]), name


@pytest.mark.parametrize(
    ("peft", "message"),
    [
        ({**LORA, "dimm": 4}, r"`peft.dimm`: .*did you mean `dim`"),
        ({"_target_": "automodel.peft.LoRAConfig", "target_modules": ["nope_proj"]}, r"`peft`: .*nope_proj"),
    ],
)
def test_bad_peft_sections_name_the_section(task, tmp_path, peft, message):
    with pytest.raises(ConfigError, match=message):
        TrainFinetuneRecipeForNextTokenPrediction(sft_config(task, tmp_path, peft=peft)).setup()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message given where CUDA is absent")
def test_qlora_without_cuda_is_a_clear_error_naming_the_section(task, tmp_path):
    cfg = sft_config(task, tmp_path, peft=LORA, quantization={"_target_": "automodel.peft.QuantizationConfig"})
    with pytest.raises(ConfigError, match=r"`quantization`: .*(CUDA|bitsandbytes)"):
        TrainFinetuneRecipeForNextTokenPrediction(cfg).setup()


def test_quantization_without_peft_is_an_error(task, tmp_path):
    cfg = sft_config(task, tmp_path, quantization={"_target_": "automodel.peft.QuantizationConfig"})
    with pytest.raises(ConfigError, match="quantized base weights train only with adapters"):
        TrainFinetuneRecipeForNextTokenPrediction(cfg).setup()
