"""finetune.retrieval end to end: a bi-encoder and a cross-encoder learn, resume exactly, and load in
sentence-transformers with the embeddings, scores and nDCG@10 our run reports."""

from __future__ import annotations

import pytest
import torch
from retrieval_recipe_helpers import LOCKERS, WITHOUT_DROPOUT, bi_encoder_config, cross_encoder_config, read_jsonl, run
from sentence_transformers import CrossEncoder, SentenceTransformer
from sentence_transformers.evaluation import InformationRetrievalEvaluator

from automodel.config import ConfigError
from automodel.data.retrieval import load_retrieval_eval_set
from automodel.models import AutoModelBiEncoder, cross_encoder_scores


@pytest.fixture(scope="module")
def bi_encoder(tmp_path_factory):
    out = tmp_path_factory.mktemp("bi")
    return run(bi_encoder_config(out)), out


def test_the_bi_encoder_learns_and_reports_retrieval_metrics(bi_encoder):
    _, out = bi_encoder
    losses = [r["loss"] for r in read_jsonl(out / "training.jsonl")]
    assert len(losses) == 12 and sum(losses[-3:]) < sum(losses[:3])
    records = read_jsonl(out / "validation.jsonl")
    assert [r["step"] for r in records] == [0, 12]
    assert {"ndcg@10", "mrr@10", "recall@1", "recall@10", "recall@100", "map@100"} <= records[-1].keys()


def test_sentence_transformers_loads_the_output_with_our_embeddings_and_our_ndcg(bi_encoder):
    recipe, out = bi_encoder
    model_dir = out / "step_000012" / "model"
    loaded = SentenceTransformer(str(model_dir), device="cpu")
    texts = ["what is kept in locker seven of the east hall?", "Locker 7 in the east hall holds the red scarf."]
    ours = recipe.hf_model.eval().encode(texts, recipe.tokenizer, max_length=24)
    theirs = loaded.encode(texts, convert_to_tensor=True)
    torch.testing.assert_close(theirs, ours, atol=1e-5, rtol=0)
    held_out = load_retrieval_eval_set(LOCKERS, limit_queries=60)
    loaded.max_seq_length = 24
    evaluator = InformationRetrievalEvaluator(
        held_out.queries, held_out.corpus, {q: set(d) for q, d in held_out.qrels.items()}, batch_size=512
    )
    reported = read_jsonl(out / "validation.jsonl")[-1]["ndcg@10"]
    assert evaluator(loaded)[f"{evaluator.primary_metric}"] == pytest.approx(reported, abs=0.01)


def test_a_resumed_run_matches_the_uninterrupted_one(bi_encoder, tmp_path):
    _, reference = bi_encoder
    cfg = bi_encoder_config(tmp_path)
    cfg.step_scheduler.max_steps = 6
    run(cfg)
    cfg = bi_encoder_config(tmp_path, restore_from={"path": "latest"})
    run(cfg)
    expected = [r["loss"] for r in read_jsonl(reference / "training.jsonl")]
    got = [r["loss"] for r in read_jsonl(tmp_path / "training.jsonl")]
    assert got == pytest.approx(expected, abs=1e-6)


def test_the_gradient_cache_gives_the_plain_losses(tmp_path):
    model = WITHOUT_DROPOUT
    run(bi_encoder_config(tmp_path / "plain", model=model, validation_dataset=None))
    run(bi_encoder_config(tmp_path / "cached", model=model, validation_dataset=None, gradient_cache={"chunk_size": 5}))
    expected = [r["loss"] for r in read_jsonl(tmp_path / "plain" / "training.jsonl")]
    got = [r["loss"] for r in read_jsonl(tmp_path / "cached" / "training.jsonl")]
    assert got == pytest.approx(expected, abs=1e-5)


def test_the_cross_encoder_learns_and_loads_in_sentence_transformers_with_our_scores(tmp_path):
    recipe = run(cross_encoder_config(tmp_path))
    records = read_jsonl(tmp_path / "validation.jsonl")
    assert [r["step"] for r in records] == [0, 10] and {"accuracy@1", "mrr"} <= records[-1].keys()
    losses = [r["loss"] for r in read_jsonl(tmp_path / "training.jsonl")]
    assert sum(losses[-3:]) < sum(losses[:3])
    pairs = [("locker seven of the east hall", "Locker 7 in the east hall holds the red scarf.")] * 2
    pairs[1] = (pairs[0][0], "Locker 9 in the west hall holds the tool box.")
    ours = cross_encoder_scores(recipe.hf_model.eval(), recipe.tokenizer, pairs, max_length=48)
    loaded = CrossEncoder(str(tmp_path / "step_000010" / "model"), device="cpu")
    theirs = torch.as_tensor(loaded.predict(pairs))
    torch.testing.assert_close(theirs.float(), ours.float().reshape(theirs.shape), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("sections", "key", "says"),
    [
        ({"loss_fn": {"_target_": "automodel.training.RerankBCELoss"}}, "loss_fn", "does not train a bi-encoder"),
        ({"gradient_cache": {"chunk_size": 0}}, "gradient_cache.chunk_size", "at least 1"),
        ({"validation": {"k_values": [0]}}, "validation", "k_values must be a list of positive"),
        (
            {
                "validation_dataset": {
                    "_target_": "automodel.data.retrieval.RetrievalDataset",
                    "path_or_dataset_id": str(LOCKERS / "test.jsonl"),
                }
            },
            "validation_dataset",
            "must be a BEIR evaluation set",
        ),
        ({"collate": {"query_max_lenght": 8}}, "collate", "query_max_length"),
    ],
    ids=["wrong-loss", "chunk-size", "k-values", "eval-set", "typo"],
)
def test_mistakes_in_the_config_name_the_key(tmp_path, sections, key, says):
    with pytest.raises(ConfigError, match=says) as error:
        run(bi_encoder_config(tmp_path, **sections))
    assert key in str(error.value)


def test_a_lora_run_saves_an_adapter_that_sentence_transformers_applies_to_the_base(tmp_path):
    lora = {"_target_": "automodel.peft.LoRAConfig", "dim": 4, "alpha": 8, "target_modules": ["query", "value"]}
    recipe = run(bi_encoder_config(tmp_path, peft=lora, validation_dataset=None))
    model_dir = tmp_path / "step_000012" / "model"
    assert (model_dir / "adapter_config.json").is_file() and not (model_dir / "model.safetensors").exists()
    assert (tmp_path / "base_model" / "model.safetensors").is_file()
    texts = ["what is kept in locker seven of the east hall?", "Locker 7 in the east hall holds the red scarf."]
    ours = recipe.hf_model.eval().encode(texts, recipe.tokenizer, max_length=24)
    loaded = SentenceTransformer(str(model_dir), device="cpu")
    loaded.max_seq_length = 24
    torch.testing.assert_close(loaded.encode(texts, convert_to_tensor=True), ours, atol=1e-5, rtol=0)
    base = AutoModelBiEncoder.from_pretrained(tmp_path / "base_model").eval()
    assert not torch.allclose(base.encode(texts, recipe.tokenizer, max_length=24), ours, atol=1e-3)


def test_lora_on_a_cross_encoder_is_refused_naming_peft(tmp_path):
    lora = {"_target_": "automodel.peft.LoRAConfig", "dim": 4}
    with pytest.raises(ConfigError, match="LoRA is supported for bi-encoders only") as error:
        run(cross_encoder_config(tmp_path, peft=lora))
    assert "peft" in str(error.value)
