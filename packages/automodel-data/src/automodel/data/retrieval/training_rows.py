"""Retrieval training rows: a query, a positive passage and hard negatives, in the shapes users have.

Accepted row shapes (columns renamed with ``columns:``):

- pairs: ``query``, ``positive`` (no negatives: the other queries' positives are the negatives);
- triplets: ``query``, ``positive``, ``negative`` (one string);
- lists: ``query``, ``positive`` (a string or a list, one drawn per item), ``negatives`` (a list);
- n-tuples: ``query``, ``positive``, ``negative_1`` ... ``negative_N`` (sentence-transformers' mined datasets);
- corpus ids: the same columns holding passage ids, resolved against a ``corpus`` file (``_id``,
  ``title``, ``text``), or BEIR queries + qrels with no training file at all.
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Mapping, Sequence
from typing import Any

from torch.utils.data import Dataset

from automodel.data.errors import DataError, dataset_label
from automodel.data.loading import load_hf_dataset
from automodel.data.retrieval.beir import load_corpus, load_qrels, load_queries

PathOrId = str | os.PathLike[str]
ROLES = ("query", "positive", "negatives")
NUMBERED = re.compile(r"\bnegative_\d+\b")


class RetrievalDataset(Dataset):
    """(query, positive, ``n_negatives`` negatives) items for bi-encoder or cross-encoder training.

    Item ``i`` is ``{"query": str, "positive": str, "negatives": [str] * n_negatives}``. When a
    row has several positives, or more negatives than asked for, the ones taken are drawn with
    a generator seeded by ``(seed, i)``: the same on every run, rank and resume, whatever order
    the loader reads items in. A row with fewer negatives than asked for repeats its own
    (drawn with replacement); a row with none is an error when ``n_negatives > 0``.
    """

    def __init__(
        self,
        path_or_dataset_id: PathOrId | Sequence[PathOrId] | None = None,
        *,
        n_negatives: int = 0,
        columns: Mapping[str, str] | None = None,
        corpus: PathOrId | None = None,
        queries: PathOrId | None = None,
        qrels: PathOrId | None = None,
        split: str = "train",
        name: str | None = None,
        limit_dataset_samples: int | None = None,
        seed: int = 0,
    ) -> None:
        """Read and check every row.

        Args:
            path_or_dataset_id: a JSONL/parquet/... file (or list), a saved directory or a hub id
                holding training rows; None with ``queries`` + ``qrels`` + ``corpus`` (BEIR form).
            n_negatives: hard negatives per item (the group is 1 positive + n_negatives).
            columns: role -> column for roles ``query``, ``positive`` and ``negatives``
                (default: the role's own name; ``negative`` is also found for triplets).
            corpus: a corpus file (``_id``, ``title``, ``text``): the positive and negative
                columns then hold passage ids.
            queries: a BEIR queries file (``_id``, ``text``), used with ``qrels`` instead of a training file.
            qrels: a BEIR qrels TSV (``query-id``, ``corpus-id``, ``score``); rows with score > 0 are positives.
            split: the split of ``path_or_dataset_id`` (slicing allowed).
            name: the subset (configuration) of a hub dataset, such as ``triplet-50``.
            limit_dataset_samples: keep only this many rows.
            seed: the seed of the per-item draws.

        Raises:
            DataError: a missing column, a query with no positive, an id not in the corpus,
                a row with no negatives when ``n_negatives > 0``, or no rows.
        """
        if n_negatives < 0:
            raise DataError(f"n_negatives must be 0 or more, not {n_negatives}", hint="set dataset.n_negatives")
        self.n_negatives, self.seed = int(n_negatives), int(seed)
        if path_or_dataset_id is None:
            if queries is None or qrels is None or corpus is None:
                raise DataError(
                    "no training rows: give a data file, or `queries`, `qrels` and `corpus` (the BEIR layout)",
                    hint="set dataset.path_or_dataset_id, or dataset.queries, dataset.qrels and dataset.corpus",
                )
            self.label = dataset_label(qrels)
            self.rows = _rows_from_qrels(queries, qrels, corpus)
        else:
            self.label = dataset_label(path_or_dataset_id)
            passages = load_corpus(corpus) if corpus is not None else None
            self.rows = _rows_from_file(path_or_dataset_id, split, name, dict(columns or {}), passages, self.label)
        if limit_dataset_samples is not None:
            self.rows = self.rows[: int(limit_dataset_samples)]
        if not self.rows:
            raise DataError("holds no rows", dataset=self.label, hint="check the file and split")
        if self.n_negatives:
            empty = next((i for i, row in enumerate(self.rows) if not row[2]), None)
            if empty is not None:
                raise DataError(
                    f"row {empty} has no negatives, but n_negatives is {self.n_negatives}",
                    dataset=self.label,
                    hint="mine negatives for it (automodel mine retrieval) or set dataset.n_negatives: 0",
                )

    def __len__(self) -> int:
        """The number of training rows."""
        return len(self.rows)

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Return ``{"query", "positive", "negatives"}`` for row ``index`` (draws seeded by ``(seed, index)``)."""
        query, positives, negatives = self.rows[index]
        rng = random.Random(self.seed * 1_000_003 + index)
        positive = positives[0] if len(positives) == 1 else rng.choice(positives)
        if len(negatives) >= self.n_negatives:
            chosen = rng.sample(negatives, self.n_negatives)
        else:
            chosen = [rng.choice(negatives) for _ in range(self.n_negatives)]
        return {"query": query, "positive": positive, "negatives": chosen}


Row = tuple[str, list[str], list[str]]


def _rows_from_file(
    source: PathOrId | Sequence[PathOrId],
    split: str,
    name: str | None,
    columns: dict[str, str],
    passages: dict | None,
    label: str,
) -> list[Row]:
    """Read (query, positives, negatives) rows from a training file, resolving ids against ``passages``."""
    unknown = sorted(set(columns) - set(ROLES))
    if unknown:
        raise DataError(
            f"columns names unknown roles {', '.join(unknown)}",
            dataset=label,
            hint=f"the roles are {', '.join(ROLES)}",
        )
    table = load_hf_dataset(source, split=split, **({"name": name} if name else {}))
    names = table.column_names
    query = columns.get("query", "query")
    positive = columns.get("positive", next((c for c in ("positive", "positives", "pos") if c in names), "positive"))
    negatives = columns.get("negatives", next((c for c in ("negatives", "negative", "neg") if c in names), None))
    for role, column in (("query", query), ("positive", positive), ("negatives", negatives)):
        if column is not None and column not in names:
            raise DataError(
                f"has no column {column!r} for the {role}",
                dataset=label,
                hint=f"its columns are {', '.join(names)}; map them with dataset.columns.{role}",
            )
    numbered = [] if negatives else sorted(NUMBERED.findall(" ".join(names)), key=lambda c: int(c.split("_")[1]))
    rows = []
    for number, record in enumerate(table):
        where = f"row {number}"
        text = record[query]
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: the query is not text ({text!r})", dataset=label, hint="fix or remove the row")
        positives = _texts(record[positive], passages, f"{where} column {positive!r}", label)
        if not positives:
            raise DataError(f"{where}: the query has no positive", dataset=label, hint="fix or remove the row")
        found = _texts(record[negatives], passages, f"{where} column {negatives!r}", label) if negatives else []
        for column in numbered:
            found += _texts(record[column], passages, f"{where} column {column!r}", label)
        rows.append((text, positives, found))
    return rows


def _texts(value: Any, passages: dict | None, where: str, label: str) -> list[str]:
    """A column value (a string or a list of strings; ids when ``passages`` is given) as a list of texts."""
    values = [] if value is None else [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise DataError(f"{where} is not text or a list of texts ({value!r})", dataset=label, hint="fix the row")
    if passages is None:
        return list(values)
    missing = [v for v in values if v not in passages]
    if missing:
        raise DataError(
            f"{where} names passage id {missing[0]!r}, which the corpus does not have",
            dataset=label,
            hint="check the ids against the corpus file's `_id` column",
        )
    return [passages[v] for v in values]


def _rows_from_qrels(queries: PathOrId, qrels: PathOrId, corpus: PathOrId) -> list[Row]:
    """(query, positives, []) rows of every query the qrels give a positive passage."""
    query_texts, passages = load_queries(queries), load_corpus(corpus)
    judged = load_qrels(qrels, query_ids=query_texts, corpus_ids=passages)
    rows = []
    for query_id, relevant in judged.items():
        positives = [passages[doc] for doc, score in relevant.items() if score > 0]
        if positives:
            rows.append((query_texts[query_id], positives, []))
    return rows
