"""finetune.vlm end to end: the tiny Llava learns colours only its images show, and transformers reloads it."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor
from vlm_recipe_helpers import ROOT, TINY_VLM, read_jsonl, run, vlm_config

from automodel.checkpoint import CHECKPOINT_KEYS
from automodel.config import ConfigError, check_config, find_problems, load_config, plain_section
from automodel.recipes.vlm.finetune import VALIDATION_KEYS, FinetuneRecipeForVLM
from automodel.recipes.vlm.freezing import FREEZE_KEYS
from automodel.recipes.vlm.schema import FINETUNE, FINETUNE_REQUIRED
from automodel.training import image_text_exact_match


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return run(vlm_config(out)), out


def test_held_out_exact_match_is_above_90_percent_where_chance_is_one_in_six(trained):
    _, out = trained
    records = read_jsonl(out / "validation.jsonl")
    assert [r["step"] for r in records] == [0, 120]
    assert records[0]["exact_match"] < 1 / 6 and records[-1]["exact_match"] > 0.9
    assert records[-1]["val_loss"] < 0.1 * records[0]["val_loss"]


def test_transformers_reloads_the_model_and_processor_and_answers_the_same(trained):
    recipe, out = trained
    model_dir = out / "step_000120" / "model"
    model = AutoModelForImageTextToText.from_pretrained(model_dir)
    processor = AutoProcessor.from_pretrained(model_dir)
    conversations = [recipe.val_dataset[i]["messages"] for i in range(len(recipe.val_dataset))]
    reloaded = image_text_exact_match(model, processor, conversations, max_new_tokens=8)
    saved = read_jsonl(out / "generations.jsonl")[-1]["predictions"]
    assert [r["prediction"] for r in reloaded["predictions"]] == [r["prediction"] for r in saved]
    assert reloaded["exact_match"] > 0.9


def test_a_resumed_run_gives_the_uninterrupted_losses(tmp_path):
    steps = {"global_batch_size": 16, "local_batch_size": 8, "max_steps": 6, "log_interval": 1}
    short = {"validation_dataset": None, "validation": None, "lr_scheduler": None}
    run(vlm_config(tmp_path / "whole", step_scheduler=steps, **short))
    run(vlm_config(tmp_path / "cut", step_scheduler={**steps, "max_steps": 3}, **short))
    resumed = vlm_config(tmp_path / "cut", step_scheduler=steps, restore_from={"path": "latest"}, **short)
    run(resumed)
    whole = [r["loss"] for r in read_jsonl(tmp_path / "whole" / "training.jsonl")]
    cut = [r["loss"] for r in read_jsonl(tmp_path / "cut" / "training.jsonl")]
    assert cut == pytest.approx(whole, abs=1e-6) and len(cut) == 6


def test_a_frozen_vision_tower_keeps_its_weights(tmp_path):
    steps = {"global_batch_size": 16, "local_batch_size": 16, "max_steps": 2, "log_interval": 1}
    cfg = vlm_config(
        tmp_path,
        step_scheduler=steps,
        validation_dataset=None,
        validation=None,
        freeze_config={"freeze_vision_tower": True},
        lr_scheduler=None,
    )
    recipe = FinetuneRecipeForVLM(cfg)
    recipe.setup()
    before = {k: v.clone() for k, v in recipe.hf_model.state_dict().items()}
    recipe.run_train_validation_loop()
    after = recipe.hf_model.state_dict()
    vision = [k for k in before if "vision_tower" in k]
    assert vision and all(torch.equal(before[k], after[k]) for k in vision)
    assert not torch.equal(before["lm_head.weight"], after["lm_head.weight"])


EXAMPLES = ROOT / "examples" / "vlm_finetune"
MODEL = {
    "_target_": "automodel.models.AutoModelForImageTextToText.from_pretrained",
    "pretrained_model_name_or_path": str(TINY_VLM),
}


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"optimiser": {}}, r"`optimiser`: is not a section finetune \(vlm\) knows; did you mean `optimizer`"),
        ({"freeze_config": {"freeze_vision": True}}, r"`freeze_config.freeze_vision`: is not a freeze_config setting"),
        ({"loss_fn": {"_target_": "automodel.training.ChunkedCrossEntropy"}}, r"`loss_fn`: .*leaves out the images"),
        (
            {"model": {**MODEL, "image_token_index": 7}},
            r"`model`: the processor's image token <image> has id 4 but the model expects image features at id 7",
        ),
        (
            {"model": {"_target_": "automodel.models.AutoModelForImageTextToText.from_config", "config": {}}},
            r"`model`: the model is built from a config, so there is no processor to load beside it",
        ),
    ],
)
def test_bad_sections_are_named(tmp_path, sections, message):
    with pytest.raises(ConfigError, match=message):
        FinetuneRecipeForVLM(vlm_config(tmp_path, **sections)).setup()


@pytest.mark.parametrize(
    "name",
    [
        "tiny_vlm.yaml",
        "tiny_vlm_lora.yaml",
        "qwen2_5_vl_3b_cord_v2.yaml",
        "qwen2_5_vl_3b_cord_v2_lora.yaml",
        "gemma3_4b_cord_v2.yaml",
    ],
)
def test_the_shipped_configs_hold_only_sections_and_keys_the_recipe_knows(name):
    cfg = load_config(EXAMPLES / name)
    check_config(cfg, FINETUNE, FINETUNE_REQUIRED, "finetune (vlm)", "examples/vlm_finetune")
    plain_section(cfg, "freeze_config", FREEZE_KEYS)
    plain_section(cfg, "checkpoint", CHECKPOINT_KEYS)
    plain_section(cfg, "validation", VALIDATION_KEYS)
    assert find_problems(cfg) == []


def test_a_peft_run_writes_an_adapter_peft_loads_with_equal_logits(tmp_path):
    from peft import PeftModel

    steps = {"global_batch_size": 16, "local_batch_size": 16, "max_steps": 3, "log_interval": 1}
    lora = {"_target_": "automodel.peft.LoRAConfig", "dim": 4, "alpha": 8, "match_all_linear": True}
    short = {"validation_dataset": None, "validation": None, "lr_scheduler": None}
    cfg = vlm_config(tmp_path, step_scheduler=steps, peft=lora, **short)
    recipe = run(cfg)
    adapted = sorted(name for name, module in recipe.hf_model.named_modules() if hasattr(module, "lora_A"))
    assert adapted and all(".language_model." in name for name in adapted)  # vision tower and projector left out
    model_dir = tmp_path / "step_000003" / "model"
    assert {"adapter_config.json", "adapter_model.safetensors", "processor_config.json"} <= {
        p.name for p in model_dir.iterdir()
    }
    base = AutoModelForImageTextToText.from_pretrained(TINY_VLM)
    loaded = PeftModel.from_pretrained(base, model_dir).eval()
    processor = AutoProcessor.from_pretrained(model_dir)
    conversation = recipe.dataset[0]["messages"]
    image = conversation[0]["content"][0]["image"]
    text = processor.apply_chat_template([conversation], tokenize=False)
    inputs = processor(text=text, images=[image], return_tensors="pt", add_special_tokens=False)
    recipe.hf_model.eval()
    with torch.no_grad():
        assert torch.allclose(loaded(**inputs).logits, recipe.hf_model(**inputs).logits, atol=1e-5)
