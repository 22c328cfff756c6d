"""Bad retrieval inputs through the real `automodel` command: exit status 2, no traceback, one paragraph
naming the YAML key or the file (and row or line), and no checkpoint written."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from cli_fork import run_cli

ROOT = Path(__file__).resolve().parent.parent
LOCKERS = ROOT / "examples" / "data" / "lockers"
QUIET = ["--+logging.progress_bar=false", "--step_scheduler.max_steps", "12"]


def _rows(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


def _beir_with(tmp: Path, *, qrels: str | None = None, corpus: str | None = None) -> str:
    folder = tmp / "beir"
    (folder / "qrels").mkdir(parents=True)
    (folder / "queries.jsonl").write_text((LOCKERS / "queries.jsonl").read_text())
    (folder / "corpus.jsonl").write_text(corpus if corpus is not None else (LOCKERS / "corpus.jsonl").read_text())
    (folder / "qrels" / "test.tsv").write_text(qrels or (LOCKERS / "qrels" / "test.tsv").read_text())
    return str(folder)


def _case(name: str, tmp: Path) -> tuple[list[str], tuple[str, ...]]:
    """The extra arguments of one bad input and what its message must name."""
    if name == "missing column":
        path = _rows(tmp / "train.jsonl", [{"question": "q", "positive": "p", "negatives": ["n"]}])
        return ["--dataset.path_or_dataset_id", path], (path, "no column 'query'")
    if name == "query with no positive":
        path = _rows(tmp / "train.jsonl", [{"query": "q", "positive": [], "negatives": ["n"]}])
        return ["--dataset.path_or_dataset_id", path], (path, "row 0: the query has no positive")
    if name == "qrels id not in the corpus":
        folder = _beir_with(tmp, qrels="query-id\tcorpus-id\tscore\nq00047\tp99999\t1\n")
        return ["--validation_dataset.path", folder], ("test.tsv", "line 2", "'p99999'")
    if name == "empty corpus":
        folder = _beir_with(tmp, corpus="")
        return ["--validation_dataset.path", folder], ("corpus.jsonl", "empty file")
    if name == "pooling the backbone cannot do":
        return ["--model.pooling", "max"], ("`model`", "pooling", "mean")
    if name == "loss of the other kind":
        return ["--loss_fn._target_", "automodel.training.RerankBCELoss", "--~loss_fn.temperature"], (
            "`loss_fn`",
            "does not train a bi-encoder",
        )
    raise AssertionError(name)


CASES = [
    "missing column",
    "query with no positive",
    "qrels id not in the corpus",
    "empty corpus",
    "pooling the backbone cannot do",
    "loss of the other kind",
]


@pytest.mark.parametrize("name", CASES)
def test_a_bad_retrieval_input_is_exit_2_naming_the_key_or_file(name: str, tmp_path: Path) -> None:
    extra, names = _case(name, tmp_path)
    run = tmp_path / "run"
    argv = ["finetune", "retrieval", "-c", "examples/retrieval/tiny_biencoder.yaml", "--checkpoint.dir", str(run)]
    result = run_cli([*argv, *extra, *QUIET], cwd=ROOT)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for part in names:
        assert part in result.stderr, (part, result.stderr[-2000:])
    assert not list(run.glob("step_*"))


def test_mining_with_faiss_asked_for_but_missing_names_the_extra(tmp_path: Path) -> None:
    if importlib.util.find_spec("faiss") is not None:
        pytest.skip("faiss is installed here")
    argv = ["mine", "retrieval", "-c", "examples/retrieval/tiny_mine.yaml", "--mining.use_faiss", "true"]
    result = run_cli([*argv, "--mining.output", str(tmp_path / "mined.jsonl")], cwd=ROOT)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "mining.use_faiss" in result.stderr and "automodel-recipes-retrieval[faiss]" in result.stderr
    assert not (tmp_path / "mined.jsonl").exists()
