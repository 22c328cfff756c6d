"""train_ft end to end on a tiny offline task: it learns, logs, checkpoints, and reloads in transformers."""

from __future__ import annotations

import json

import pytest
import torch
from recipe_test_helpers import read_jsonl, run_recipe, sft_config
from transformers import AutoModelForCausalLM, AutoTokenizer

from automodel.recipes.llm.train_ft import main


@pytest.fixture(scope="module")
def trained(task, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return run_recipe(sft_config(task, out)), out


def test_validation_loss_falls(trained):
    _, out = trained
    records = read_jsonl(out / "validation.jsonl")
    assert [r["step"] for r in records] == [0, 20, 40]
    assert records[-1]["val_loss"] < 0.5 * records[0]["val_loss"]
    assert records[-1]["val_ppl"] == pytest.approx(2.718281828 ** records[-1]["val_loss"], rel=1e-6)


def test_training_jsonl_has_a_metrics_sample_per_logged_step(trained):
    _, out = trained
    records = read_jsonl(out / "training.jsonl")
    assert [r["step"] for r in records] == [5, 10, 15, 20, 25, 30, 35, 40]
    for record in records:
        assert {"step", "epoch", "loss", "grad_norm", "lr", "mem", "tps", "mfu"} <= set(record)
        assert record["tps"] > 0 and 0 < record["mfu"] < 1
    assert records[-1]["loss"] < records[0]["loss"]


def test_the_final_checkpoint_has_the_design_layout_and_redacts_secrets(trained):
    _, out = trained
    step = out / "step_000040"
    assert (out / "latest").read_text().strip() == "step_000040"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in (step / "model").iterdir()}
    state = json.loads((step / "train_state.json").read_text())
    assert (state["step"], state["consumed_samples"]) == (40, 640)
    saved = (step / "config.yaml").read_text()
    assert "hf_token: <redacted>" in saved
    assert not [p for p in step.rglob("*") if p.is_file() and b"s3cr3t-value" in p.read_bytes()]
    assert not [p for p in out.iterdir() if "partial" in p.name]


def test_the_saved_model_reloads_in_transformers_with_identical_logits(trained):
    recipe, out = trained
    model_dir = out / "step_000040" / "model"
    reloaded = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    ids = torch.tensor([tokenizer("Write 42 in words.")["input_ids"]])
    recipe.model.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(ids).logits, recipe.model(ids).logits, atol=1e-6)


def test_packed_sequences_learn_too(task, tmp_path):
    cfg = sft_config(task, tmp_path, packed_sequence={"enabled": True, "packed_sequence_size": 96})
    run_recipe(cfg)
    records = read_jsonl(tmp_path / "validation.jsonl")
    assert records[-1]["val_loss"] < 0.5 * records[0]["val_loss"]


def test_chunked_cross_entropy_gives_the_same_first_steps(task, tmp_path):
    steps = {"global_batch_size": 16, "local_batch_size": 8, "max_steps": 3, "log_interval": 1}
    schedule = {"_target_": "automodel.training.constant"}
    plain = sft_config(task, tmp_path / "plain", step_scheduler=steps, validation_dataset=None, lr_scheduler=schedule)
    chunked = sft_config(
        task,
        tmp_path / "chunked",
        step_scheduler=steps,
        validation_dataset=None,
        lr_scheduler=schedule,
        loss_fn={"_target_": "automodel.training.ChunkedCrossEntropy", "chunk_size": 7},
    )
    run_recipe(plain), run_recipe(chunked)
    a = [r["loss"] for r in read_jsonl(tmp_path / "plain" / "training.jsonl")]
    b = [r["loss"] for r in read_jsonl(tmp_path / "chunked" / "training.jsonl")]
    assert a == pytest.approx(b, abs=1e-5)


def test_generation_exact_match_is_recorded_with_its_predictions(task, tmp_path):
    cfg = sft_config(
        task,
        tmp_path,
        validation={"generation": {"max_new_tokens": 8, "num_samples": 4}},
        lr_scheduler=None,
        step_scheduler={"global_batch_size": 8, "local_batch_size": 8, "max_steps": 2, "val_check_interval": 2},
    )
    run_recipe(cfg)
    records = read_jsonl(tmp_path / "validation.jsonl")
    assert all(0.0 <= r["exact_match"] <= 1.0 for r in records)
    generations = read_jsonl(tmp_path / "generations.jsonl")
    assert len(generations[-1]["predictions"]) == 4
    assert generations[-1]["predictions"][0]["prompt"].startswith("Question: Write")


def test_pretraining_on_plain_text_runs_through_main(task, tmp_path):
    corpus = {
        "_target_": "automodel.data.llm.PretrainTextDataset",
        "path_or_dataset_id": str(task / "corpus.jsonl"),
        "seq_length": 32,
    }
    cfg = sft_config(
        task,
        tmp_path,
        dataset=corpus,
        validation_dataset=corpus,
        step_scheduler={"global_batch_size": 8, "local_batch_size": 4, "max_steps": 20, "val_check_interval": 20},
    )
    assert main(cfg) == 0
    records = read_jsonl(tmp_path / "validation.jsonl")
    assert records[-1]["val_loss"] < records[0]["val_loss"]


def test_the_saved_configs_carry_the_tokenizers_special_token_ids(trained):
    _, out = trained
    model_dir = out / "step_000040" / "model"
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    generation = json.loads((model_dir / "generation_config.json").read_text())
    for saved in (config, generation):
        assert saved["eos_token_id"] == tokenizer.eos_token_id
        assert saved["pad_token_id"] == tokenizer.pad_token_id


def test_a_small_max_shard_size_writes_an_indexed_sharded_model_that_reloads(task, tmp_path):
    steps = {"global_batch_size": 8, "local_batch_size": 8, "max_steps": 1}
    cfg = sft_config(
        task,
        tmp_path,
        step_scheduler=steps,
        validation_dataset=None,
        lr_scheduler=None,
        checkpoint={"dir": str(tmp_path), "max_shard_size": "100KB"},
    )
    recipe = run_recipe(cfg)
    model_dir = tmp_path / "step_000001" / "model"
    shards = sorted(p.name for p in model_dir.glob("model-*.safetensors"))
    index = json.loads((model_dir / "model.safetensors.index.json").read_text())
    assert len(shards) > 1 and set(index["weight_map"].values()) == set(shards)
    reloaded = AutoModelForCausalLM.from_pretrained(model_dir)
    for name, tensor in recipe.model.state_dict().items():
        assert torch.equal(reloaded.state_dict()[name], tensor), name
