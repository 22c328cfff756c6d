"""mine.retrieval: the filters do what their names say, mined negatives are never positives, and the same
model and data give sentence-transformers' mine_hard_negatives negatives."""

from __future__ import annotations

import importlib.util
import json
import random
import re

import pytest
import torch
from datasets import Dataset
from retrieval_recipe_helpers import LOCKERS, MINILM, TOKENIZER, read_jsonl
from sentence_transformers import SentenceTransformer
from sentence_transformers.util import mine_hard_negatives

from automodel.config import ConfigError, config_from_dict
from automodel.recipes.retrieval.mine import run_mining
from automodel.recipes.retrieval.mining import MiningSettings, choose_negatives, filter_candidates

INF = float("inf")


def _mine_config(tmp_path, rows: int = 120, **mining):
    pairs = tmp_path / "pairs.jsonl"
    lines = (LOCKERS / "train.jsonl").read_text().splitlines()[:rows]
    pairs.write_text("".join(json.dumps({k: json.loads(x)[k] for k in ("query", "positive")}) + "\n" for x in lines))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(line + "\n" for line in (LOCKERS / "corpus.jsonl").read_text().splitlines()[:400]))
    settings = {
        "input": str(pairs),
        "corpus": str(corpus),
        "output": str(tmp_path / "mined.jsonl"),
        "num_negatives": 4,
        "range_min": 2,
        "range_max": 30,
        "relative_margin": 0.05,
        "batch_size": 128,
        "chunk_rows": 150,
        **mining,
    }
    return config_from_dict(
        {
            "model": {"_target_": "automodel.models.AutoModelBiEncoder.from_pretrained",
                      "pretrained_model_name_or_path": MINILM},
            "tokenizer": TOKENIZER,
            "mining": settings,
        }
    )  # fmt: skip


def test_the_same_negatives_as_sentence_transformers_and_never_a_positive(tmp_path):
    cfg = _mine_config(tmp_path)
    counts = run_mining(cfg)
    ours = {row["query"]: row for row in read_jsonl(tmp_path / "mined.jsonl")}
    assert counts["queries"] == 120 and counts["written"] == len(ours)
    assert not (tmp_path / "mined.jsonl.embeddings").exists()
    assert all(row["positive"] not in row["negatives"] for row in ours.values())
    pairs = read_jsonl(tmp_path / "pairs.jsonl")
    corpus = [json.loads(line)["text"] for line in (tmp_path / "corpus.jsonl").read_text().splitlines()]
    theirs = mine_hard_negatives(
        Dataset.from_list(pairs),
        SentenceTransformer(MINILM, device="cpu"),
        corpus=corpus,
        range_min=2,
        range_max=30,
        relative_margin=0.05,
        num_negatives=4,
        output_format="n-tuple",
        batch_size=128,
        verbose=False,
    )
    assert len(theirs) > 0
    for row in theirs:
        assert ours[row["query"]]["negatives"] == [row[f"negative_{i}"] for i in range(1, 5)]


def test_an_interrupted_run_reuses_the_saved_corpus_embeddings(tmp_path):
    cfg = _mine_config(tmp_path, rows=20)
    run_mining(cfg)
    first = (tmp_path / "mined.jsonl").read_text()
    cache = tmp_path / "mined.jsonl.embeddings"
    cache.mkdir()
    torch.manual_seed(0)
    from safetensors.torch import save_file

    save_file({"embeddings": torch.nn.functional.normalize(torch.randn(150, 384), dim=-1)},
              cache / "corpus_000000_150.safetensors")  # fmt: skip
    run_mining(_mine_config(tmp_path, rows=20, overwrite=True))
    assert (tmp_path / "mined.jsonl").read_text() != first  # the saved chunk was used, not recomputed


def _candidates():
    scores = torch.tensor([[0.9, 0.8, 0.7, 0.6, 0.5], [-0.1, -0.2, -0.3, -0.4, -0.5]])
    indices = torch.tensor([[0, 1, 2, 3, 4], [5, 6, 7, 8, -1]])
    return scores, indices


def test_positives_the_query_itself_and_missing_candidates_are_never_kept():
    scores, indices = _candidates()
    kept = filter_candidates(scores, indices, torch.tensor([0.9, -0.1]), [{0}, {5}], [2, -1], MiningSettings())
    assert kept[0].isinf().tolist() == [True, False, True, False, False]
    assert kept[1].isinf().tolist() == [True, False, False, False, True]


@pytest.mark.parametrize(
    ("settings", "dropped_first_row", "dropped_second_row"),
    [
        (MiningSettings(absolute_margin=0.15), [True, True, False, False, False], [True, True, False, False, True]),
        # 5% of |positive| below the positive: 0.855 on the first row; -0.105 on the second (sign-safe)
        (MiningSettings(relative_margin=0.05), [True, False, False, False, False], [True, False, False, False, True]),
        (MiningSettings(max_score=0.65), [True, True, True, False, False], [True, False, False, False, True]),
        (MiningSettings(min_score=-0.25), [True, False, False, False, False], [True, False, True, True, True]),
    ],
    ids=["absolute_margin", "relative_margin", "max_score", "min_score"],
)
def test_each_filter_drops_what_its_name_says(settings, dropped_first_row, dropped_second_row):
    scores, indices = _candidates()
    kept = filter_candidates(scores, indices, torch.tensor([0.9, -0.1]), [{0}, {5}], [-1, -1], settings)
    assert kept[0].isinf().tolist() == dropped_first_row
    assert kept[1].isinf().tolist() == dropped_second_row


def test_range_min_skips_the_nearest_and_random_sampling_is_seeded():
    scores, indices = _candidates()
    top = choose_negatives(scores, indices, MiningSettings(num_negatives=2, range_min=1), 5, random.Random(0))
    assert [[i for i, _ in row] for row in top] == [[1, 2], [6, 7]]
    settings = MiningSettings(num_negatives=2, sampling_strategy="random")
    first = choose_negatives(scores, indices, settings, 5, random.Random(3))
    assert first == choose_negatives(scores, indices, settings, 5, random.Random(3))
    assert all(s != -INF for row in first for _, s in row)


@pytest.mark.parametrize(
    ("mining", "key", "says"),
    [
        ({"use_faiss": True}, "mining.use_faiss", "needs faiss"),
        ({"query_column": "question"}, "mining.query_column", "names column 'question'"),
        ({"range_min": 40}, "mining", "range_min (40) must be smaller than range_max (30)"),
        ({"sampling_strategy": "best"}, "mining.sampling_strategy", "top"),
    ],
    ids=["faiss-missing", "column", "range", "strategy"],
)
def test_mistakes_name_the_key(tmp_path, mining, key, says):
    if "use_faiss" in mining and importlib.util.find_spec("faiss") is not None:
        pytest.skip("faiss is installed here")
    with pytest.raises(ConfigError, match=re.escape(says)) as error:
        run_mining(_mine_config(tmp_path, rows=10, **mining))
    assert key in str(error.value)


def test_rescoring_with_a_cross_encoder_gives_sentence_transformers_negatives(tmp_path):
    from sentence_transformers import CrossEncoder
    from transformers import AutoTokenizer

    from automodel.models import AutoModelCrossEncoder, write_cross_encoder_files

    reranker_dir = tmp_path / "reranker"
    config = {"model_type": "bert", "vocab_size": 30522, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 2, "num_attention_heads": 2, "max_position_embeddings": 128,
              "initializer_range": 0.2}  # fmt: skip
    reranker = AutoModelCrossEncoder.from_config(config, seed=0)
    reranker.save_pretrained(reranker_dir)
    AutoTokenizer.from_pretrained(MINILM).save_pretrained(reranker_dir)
    write_cross_encoder_files(reranker, reranker_dir, max_seq_length=64)
    cfg = _mine_config(tmp_path, rows=40, range_min=0, range_max=10, relative_margin=None)
    cfg = config_from_dict(
        {
            **cfg.to_container(),
            "cross_encoder": {"_target_": "automodel.models.AutoModelCrossEncoder.from_pretrained",
                              "pretrained_model_name_or_path": str(reranker_dir)},
        }
    )  # fmt: skip
    run_mining(cfg)
    ours = {row["query"]: row["negatives"] for row in read_jsonl(tmp_path / "mined.jsonl")}
    corpus = [json.loads(line)["text"] for line in (tmp_path / "corpus.jsonl").read_text().splitlines()]
    theirs = mine_hard_negatives(
        Dataset.from_list(read_jsonl(tmp_path / "pairs.jsonl")),
        SentenceTransformer(MINILM, device="cpu"),
        corpus=corpus,
        cross_encoder=CrossEncoder(str(reranker_dir), device="cpu"),
        range_min=0,
        range_max=10,
        num_negatives=4,
        output_format="n-tuple",
        batch_size=128,
        verbose=False,
    )
    assert len(theirs) == 40
    for row in theirs:
        assert ours[row["query"]] == [row[f"negative_{i}"] for i in range(1, 5)]
