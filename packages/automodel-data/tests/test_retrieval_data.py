"""Retrieval rows in every accepted shape, their seeded draws, the two collates and BEIR evaluation sets."""

from __future__ import annotations

from pathlib import Path

import pytest
from data_test_helpers import write_jsonl

from automodel.data import DataError
from automodel.data.retrieval import (
    BiEncoderCollator,
    CrossEncoderCollator,
    RetrievalDataset,
    iter_corpus,
    load_retrieval_eval_set,
)

PASSAGES = {f"p{i}": f"passage number {i}" for i in range(6)}


def _beir(folder: Path, qrels: str = "query-id\tcorpus-id\tscore\nq0\tp0\t1\nq1\tp1\t1\nq1\tp2\t0\n") -> Path:
    write_jsonl(
        folder / "corpus.jsonl", [{"_id": k, "title": "T" if k == "p5" else "", "text": v} for k, v in PASSAGES.items()]
    )
    write_jsonl(folder / "queries.jsonl", [{"_id": f"q{i}", "text": f"query {i}"} for i in range(3)])
    (folder / "qrels").mkdir(exist_ok=True)
    (folder / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return folder


def test_pairs_triplets_and_negative_lists_give_the_same_items(tmp_path):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", [{"query": "q", "positive": "p"}])
    triplets = write_jsonl(tmp_path / "triplets.jsonl", [{"query": "q", "positive": "p", "negative": "n"}])
    lists = write_jsonl(tmp_path / "lists.jsonl", [{"query": "q", "positive": ["p"], "negatives": ["n"]}])
    assert RetrievalDataset(pairs)[0] == {"query": "q", "positive": "p", "negatives": []}
    assert RetrievalDataset(triplets, n_negatives=1)[0] == {"query": "q", "positive": "p", "negatives": ["n"]}
    assert RetrievalDataset(lists, n_negatives=1)[0] == {"query": "q", "positive": "p", "negatives": ["n"]}
    renamed = write_jsonl(tmp_path / "renamed.jsonl", [{"anchor": "q", "pos": "p", "hard": ["n"]}])
    columns = {"query": "anchor", "positive": "pos", "negatives": "hard"}
    assert RetrievalDataset(renamed, n_negatives=1, columns=columns)[0]["negatives"] == ["n"]


def test_negatives_are_drawn_by_seed_and_index_and_repeat_when_too_few(tmp_path):
    rows = [{"query": f"q{i}", "positive": "p", "negatives": [f"n{j}" for j in range(10)]} for i in range(20)]
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    first, again = RetrievalDataset(path, n_negatives=3, seed=7), RetrievalDataset(path, n_negatives=3, seed=7)
    assert [first[i] for i in range(20)] == [again[i] for i in reversed(range(20))][::-1]
    assert [first[i] for i in range(20)] != [RetrievalDataset(path, n_negatives=3, seed=8)[i] for i in range(20)]
    assert all(len(set(first[i]["negatives"])) == 3 for i in range(20))
    few = write_jsonl(tmp_path / "few.jsonl", [{"query": "q", "positive": "p", "negatives": ["n"]}])
    assert RetrievalDataset(few, n_negatives=3)[0]["negatives"] == ["n", "n", "n"]


def test_corpus_ids_and_beir_queries_resolve_to_texts(tmp_path):
    _beir(tmp_path)
    ids = write_jsonl(tmp_path / "ids.jsonl", [{"query": "q", "positive": "p1", "negatives": ["p2", "p5"]}])
    item = RetrievalDataset(ids, n_negatives=2, corpus=tmp_path / "corpus.jsonl", seed=0)[0]
    assert item["positive"] == "passage number 1"
    assert sorted(item["negatives"]) == ["T passage number 5", "passage number 2"]
    beir = RetrievalDataset(
        queries=tmp_path / "queries.jsonl", qrels=tmp_path / "qrels" / "test.tsv", corpus=tmp_path / "corpus.jsonl"
    )
    assert [beir[i]["positive"] for i in range(len(beir))] == ["passage number 0", "passage number 1"]


def test_evaluation_set_keeps_judged_queries_and_streams_the_corpus(tmp_path):
    evaluation = load_retrieval_eval_set(_beir(tmp_path))
    assert evaluation.qrels == {"q0": {"p0": 1}, "q1": {"p1": 1}}
    assert evaluation.queries == {"q0": "query 0", "q1": "query 1"}
    assert evaluation.corpus["p5"] == "T passage number 5"
    chunks = list(iter_corpus(tmp_path / "corpus.jsonl", chunk_rows=4))
    assert [len(ids) for ids, _ in chunks] == [4, 2]


def test_bi_encoder_batches_keep_each_querys_group_together_with_prompts_and_limits(tokenizer):
    items = [{"query": f"q{i}", "positive": f"p{i}", "negatives": [f"n{i}a", f"n{i}b"]} for i in range(2)]
    collate = BiEncoderCollator(tokenizer, query_max_length=4, passage_max_length=3, query_prompt="One two ")
    batch = collate(items)
    assert batch["group_size"] == 3
    assert batch["query_input_ids"].shape[0] == 2 and batch["query_input_ids"].shape[1] <= 4
    assert batch["passage_input_ids"].shape[0] == 6 and batch["passage_input_ids"].shape[1] <= 3
    first_query = tokenizer.decode(batch["query_input_ids"][0][batch["query_attention_mask"][0].bool()])
    assert first_query.startswith("One two")
    second_positive = tokenizer.decode(batch["passage_input_ids"][3][batch["passage_attention_mask"][3].bool()])
    assert second_positive == "p1"


def test_cross_encoder_batches_pair_every_passage_with_its_query(tokenizer):
    items = [{"query": f"q{i}", "positive": f"p{i}", "negatives": [f"n{i}"]} for i in range(2)]
    batch = CrossEncoderCollator(tokenizer, max_length=16)(items)
    assert batch["labels"].tolist() == [1.0, 0.0, 1.0, 0.0]
    assert batch["input_ids"].shape[0] == 4 and batch["group_size"] == 2


@pytest.mark.parametrize(
    ("rows", "kwargs", "says"),
    [
        ([{"question": "q", "positive": "p"}], {}, "no column 'query'"),
        ([{"query": "q", "positive": []}], {}, "row 0: the query has no positive"),
        ([{"query": "q", "positive": "p"}], {"n_negatives": 2}, "row 0 has no negatives, but n_negatives is 2"),
        ([{"query": "q", "positive": "p9"}], {"corpus": True}, "passage id 'p9', which the corpus does not have"),
        ([{"query": 3, "positive": "p"}], {}, "row 0: the query is not text"),
    ],
    ids=["missing-column", "no-positive", "no-negatives", "unknown-id", "not-text"],
)
def test_bad_training_rows_name_the_file_and_row(tmp_path, rows, kwargs, says):
    path = write_jsonl(tmp_path / "train.jsonl", rows)
    if kwargs.pop("corpus", False):
        kwargs["corpus"] = _beir(tmp_path) / "corpus.jsonl"
    with pytest.raises(DataError, match=says) as error:
        RetrievalDataset(path, **kwargs)
    assert str(path) in str(error.value)


@pytest.mark.parametrize(
    ("qrels", "says"),
    [
        ("query-id\tcorpus-id\tscore\nq0\tp77\t1\n", "line 2 names passage 'p77', which the corpus does not have"),
        ("query-id\tcorpus-id\tscore\nq9\tp0\t1\n", "line 2 names query 'q9'"),
        ("q0\tp0\t1\n", "line 1 is not the header"),
        ("query-id\tcorpus-id\tscore\nq0\tp0\tyes\n", "line 2 is not"),
        ("query-id\tcorpus-id\tscore\nq0\tp0\t0\n", "judges no query"),
    ],
    ids=["unknown-passage", "unknown-query", "no-header", "bad-score", "nothing-relevant"],
)
def test_bad_qrels_name_the_file_and_line(tmp_path, qrels, says):
    with pytest.raises(DataError, match=says) as error:
        load_retrieval_eval_set(_beir(tmp_path, qrels))
    assert "test.tsv" in str(error.value)


def test_an_empty_corpus_is_refused(tmp_path):
    _beir(tmp_path)
    (tmp_path / "corpus.jsonl").write_text("")
    with pytest.raises(DataError, match="empty file"):
        load_retrieval_eval_set(tmp_path)


def test_numbered_negative_columns_are_read_in_order(tmp_path):
    rows = [{"query": "q", "positive": "p", "negative_2": "n2", "negative_10": "n10", "negative_1": "n1"}]
    path = write_jsonl(tmp_path / "tuples.jsonl", rows)
    assert RetrievalDataset(path, n_negatives=3, seed=0).rows[0][2] == ["n1", "n2", "n10"]
