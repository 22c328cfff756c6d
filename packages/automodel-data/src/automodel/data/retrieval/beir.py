"""Corpus, queries and relevance judgements in the BEIR / MTEB layout.

A folder holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``) and ``qrels/<split>.tsv`` (``query-id``, ``corpus-id``, ``score``, with a header).
Each file may also be given on its own, as a path or a hub id ``datasets`` can load.
A passage's text is its title and text joined by a space (its text alone without a title).
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from automodel.data.errors import DataError, dataset_label
from automodel.data.loading import load_hf_dataset

PathOrId = str | os.PathLike[str]
CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class RetrievalEvalSet:
    """What a retrieval evaluation needs: query texts, passage texts and the relevant passages per query.

    Attributes:
        queries: query id -> text, only queries with at least one relevant passage.
        corpus: passage id -> text (title and text joined).
        qrels: query id -> {passage id: relevance > 0}.
    """

    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_retrieval_eval_set(
    path: PathOrId | None = None,
    *,
    split: str = "test",
    corpus: PathOrId | None = None,
    queries: PathOrId | None = None,
    qrels: PathOrId | None = None,
    limit_queries: int | None = None,
) -> RetrievalEvalSet:
    """Load a BEIR-layout folder (or its three files given one by one) for evaluation.

    Args:
        path: a folder with ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
        split: which qrels file of the folder to read.
        corpus, queries, qrels: the files (or hub ids) to use instead of the folder's.
        limit_queries: keep the first this many judged queries.

    Returns:
        A RetrievalEvalSet of the queries the qrels judge.

    Raises:
        DataError: a missing file, an empty corpus, a qrels id not in the corpus or queries,
            or no judged query.
    """
    folder = Path(path) if path is not None else None
    if folder is not None and not folder.is_dir():
        raise DataError("is not a folder", dataset=os.fspath(folder), hint="give a BEIR-layout folder")
    corpus = corpus if corpus is not None else _in_folder(folder, "corpus.jsonl", "corpus")
    queries = queries if queries is not None else _in_folder(folder, "queries.jsonl", "queries")
    qrels = qrels if qrels is not None else _in_folder(folder, f"qrels/{split}.tsv", "qrels")
    query_texts, passages = load_queries(queries), load_corpus(corpus)
    judged = {
        q: {d: s for d, s in docs.items() if s > 0}
        for q, docs in load_qrels(qrels, query_ids=query_texts, corpus_ids=passages).items()
    }
    judged = {q: docs for q, docs in judged.items() if docs}
    if limit_queries is not None:
        judged = dict(list(judged.items())[: int(limit_queries)])
    if not judged:
        raise DataError("judges no query as having a relevant passage", dataset=dataset_label(qrels))
    return RetrievalEvalSet({q: query_texts[q] for q in judged}, passages, judged)


def _in_folder(folder: Path | None, name: str, role: str) -> Path:
    if folder is None:
        raise DataError(f"no {role} file", hint=f"give the folder, or `{role}` as a file path or hub id")
    path = folder / name
    if not path.is_file():
        raise DataError(f"has no {name}", dataset=os.fspath(folder), hint="write it, or give the file on its own")
    return path


def iter_corpus(corpus: PathOrId, chunk_rows: int = CHUNK_ROWS) -> Iterator[tuple[list[str], list[str]]]:
    """Yield ``(ids, texts)`` of a corpus file ``chunk_rows`` passages at a time, read from its Arrow cache.

    The whole corpus is never held as Python strings: only one chunk at a time.

    Raises:
        DataError: the file lacks ``_id``/``text`` or holds no passage.
    """
    table = _corpus_table(corpus)
    for start in range(0, len(table), chunk_rows):
        chunk = table[start : start + chunk_rows]
        titles = chunk.get("title") or [None] * len(chunk["_id"])
        yield [str(i) for i in chunk["_id"]], [_passage(t, x) for t, x in zip(titles, chunk["text"], strict=True)]


def corpus_size(corpus: PathOrId) -> int:
    """Return the number of passages in a corpus file."""
    return len(_corpus_table(corpus))


def load_corpus(corpus: PathOrId) -> dict[str, str]:
    """Return passage id -> text (title and text joined) of a corpus file or hub id."""
    passages: dict[str, str] = {}
    for ids, texts in iter_corpus(corpus):
        passages.update(zip(ids, texts, strict=True))
    return passages


def load_queries(queries: PathOrId) -> dict[str, str]:
    """Return query id -> text of a queries file (``_id``, ``text``) or hub id."""
    table = load_hf_dataset(queries)
    _require(table.column_names, ("_id", "text"), dataset_label(queries))
    return {str(i): t for i, t in zip(table["_id"], table["text"], strict=True)}


def load_qrels(
    qrels: PathOrId, *, query_ids: Mapping[str, str] | None = None, corpus_ids: Mapping[str, str] | None = None
) -> dict[str, dict[str, int]]:
    """Return query id -> {passage id: score} of a qrels TSV (header ``query-id corpus-id score``) or hub id.

    Raises:
        DataError: a malformed line, or an id not among ``query_ids`` / ``corpus_ids`` when given,
            naming the file and line.
    """
    label = dataset_label(qrels)
    judged: dict[str, dict[str, int]] = {}
    for line, (query, passage, score) in _qrels_lines(qrels, label):
        if query_ids is not None and query not in query_ids:
            raise DataError(
                f"line {line} names query {query!r}, which the queries file does not have",
                dataset=label,
                hint="fix the id or remove the line",
            )
        if corpus_ids is not None and passage not in corpus_ids:
            raise DataError(
                f"line {line} names passage {passage!r}, which the corpus does not have",
                dataset=label,
                hint="fix the id or remove the line",
            )
        judged.setdefault(query, {})[passage] = score
    return judged


def _qrels_lines(qrels: PathOrId, label: str) -> Iterator[tuple[int, tuple[str, str, int]]]:
    """(line number, (query id, passage id, score)) of a local TSV, or of a hub dataset's rows."""
    path = Path(qrels)
    if not path.is_file():
        table = load_hf_dataset(qrels)
        _require(table.column_names, ("query-id", "corpus-id", "score"), label)
        for number, row in enumerate(table, start=2):
            yield number, (str(row["query-id"]), str(row["corpus-id"]), int(row["score"]))
        return
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle, delimiter="\t")
        header = next(reader, None)
        if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
            raise DataError(
                "line 1 is not the header `query-id<TAB>corpus-id<TAB>score`",
                dataset=label,
                hint="write that header as the first line",
            )
        for number, fields in enumerate(reader, start=2):
            if not fields:
                continue
            if len(fields) < 3 or not fields[2].strip().lstrip("-").isdigit():
                raise DataError(
                    f"line {number} is not `query-id<TAB>corpus-id<TAB>score` with an integer score",
                    dataset=label,
                    hint="fix or remove the line",
                )
            yield number, (fields[0].strip(), fields[1].strip(), int(fields[2]))


def _corpus_table(corpus: PathOrId):
    label = dataset_label(corpus)
    table = load_hf_dataset(corpus)
    _require(table.column_names, ("_id", "text"), label)
    if len(table) == 0:
        raise DataError("holds no passage", dataset=label, hint="write passages into it")
    return table


def _require(names: list[str], needed: tuple[str, ...], label: str) -> None:
    missing = [n for n in needed if n not in names]
    if missing:
        raise DataError(
            f"has no column {', '.join(repr(m) for m in missing)}",
            dataset=label,
            hint=f"its columns are {', '.join(names)}; the BEIR layout needs {', '.join(needed)}",
        )


def _passage(title: str | None, text: str) -> str:
    return f"{title} {text}" if title else text
