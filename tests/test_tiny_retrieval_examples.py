"""examples/retrieval through the CLI: the bi-encoder example lifts held-out nDCG@10 from the base
all-MiniLM-L6-v2's to over 0.5, sentence-transformers loads the output with our embeddings and its own
InformationRetrievalEvaluator reports our nDCG@10; mining writes negatives the finetune route reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from cli_fork import run_cli
from sentence_transformers import SentenceTransformer
from sentence_transformers.evaluation import InformationRetrievalEvaluator

from automodel.data.retrieval import load_retrieval_eval_set
from automodel.models import AutoModelBiEncoder, load_tokenizer

ROOT = Path(__file__).resolve().parent.parent
LOCKERS = ROOT / "examples" / "data" / "lockers"
QUIET = ["--+logging.progress_bar=false"]


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def bi_encoder_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bi")
    argv = ["finetune", "retrieval", "-c", "examples/retrieval/tiny_biencoder.yaml", "--checkpoint.dir", str(out)]
    result = run_cli([*argv, *QUIET], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "SentenceTransformer(" in result.stderr
    return out


def test_the_bi_encoder_example_lifts_held_out_ndcg_past_half(bi_encoder_run):
    first, last = _jsonl(bi_encoder_run / "validation.jsonl")[0], _jsonl(bi_encoder_run / "validation.jsonl")[-1]
    assert first["step"] == 0 and first["ndcg@10"] < 0.05
    assert last["ndcg@10"] >= 0.5 and last["recall@1"] >= 0.4


def test_sentence_transformers_loads_it_with_our_embeddings_and_measures_our_ndcg(bi_encoder_run):
    model_dir = sorted(bi_encoder_run.glob("step_*"))[-1] / "model"
    loaded = SentenceTransformer(str(model_dir), device="cpu")
    ours = AutoModelBiEncoder.from_pretrained(model_dir).eval()
    texts = ["what is kept in locker twelve of the west hall?", "Locker 12 in the west hall holds the brass key."]
    expected = ours.encode(texts, load_tokenizer(model_dir), max_length=32)
    loaded.max_seq_length = 32
    torch.testing.assert_close(loaded.encode(texts, convert_to_tensor=True), expected, atol=1e-5, rtol=0)
    held_out = load_retrieval_eval_set(LOCKERS)
    qrels = {q: set(docs) for q, docs in held_out.qrels.items()}
    evaluator = InformationRetrievalEvaluator(held_out.queries, held_out.corpus, qrels, batch_size=256)
    reported = _jsonl(bi_encoder_run / "validation.jsonl")[-1]["ndcg@10"]
    assert evaluator(loaded)[evaluator.primary_metric] == pytest.approx(reported, abs=0.01)


def test_mined_negatives_are_never_positives_and_train_the_bi_encoder(bi_encoder_run, tmp_path):
    mined, trained = tmp_path / "mined.jsonl", str(sorted(bi_encoder_run.glob("step_*"))[-1] / "model")
    argv = ["mine", "retrieval", "-c", "examples/retrieval/tiny_mine.yaml", "--mining.output", str(mined)]
    argv += ["--model.pretrained_model_name_or_path", trained]
    result = run_cli(argv, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"into {mined}" in result.stderr
    rows = _jsonl(mined)
    assert len(rows) > 2000 and all(row["positive"] not in row["negatives"] for row in rows)
    argv = ["finetune", "retrieval", "-c", "examples/retrieval/tiny_biencoder.yaml", "--checkpoint.dir", str(tmp_path)]
    extra = ["--dataset.path_or_dataset_id", str(mined), "--step_scheduler.max_steps", "12", "--~validation_dataset"]
    extra += ["--step_scheduler.log_interval", "1"]
    result = run_cli([*argv, *extra, *QUIET], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(_jsonl(tmp_path / "training.jsonl")) == 12
