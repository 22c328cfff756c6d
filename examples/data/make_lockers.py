"""Write the shipped tiny retrieval task: find the locker a query names, with the number spelled in words.

    python examples/data/make_lockers.py            # writes lockers/

Passages use digits ("Locker 472 in the north hall holds the blue helmet."), queries spell the
number out ("what is kept in locker four hundred seventy-two of the north hall?"), so a model
that has not learned the word-to-digit mapping finds the hall but not the locker: the base
all-MiniLM-L6-v2 scores an nDCG@10 of a few hundredths. Every passage has one query; a seeded
10% of the queries is held out (their numbers are seen in other halls during training, never
their passage), so the held-out score measures the mapping, not a memorised table.

Files (the BEIR / MTEB layout plus a training file):
- ``corpus.jsonl``: ``{"_id", "title", "text"}`` per passage;
- ``queries.jsonl``: ``{"_id", "text"}`` per query;
- ``qrels/train.tsv`` and ``qrels/test.tsv``: ``query-id, corpus-id, score`` with a header;
- ``train.jsonl``: ``{"query", "positive", "negatives"}`` with random negatives from the corpus;
- ``test.jsonl``: the held-out queries as groups for rerankers: the positive and 9 other lockers
  of the same hall.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from make_number_words import in_words

HALLS = ["north", "south", "east", "west"]
THINGS = ["blue helmet", "red scarf", "old radio", "brass key", "wool blanket", "spare tyre", "green umbrella",
          "tool box", "chess set", "paint brushes", "climbing rope", "first aid kit", "tennis racket",
          "camping stove", "box of letters", "silver kettle", "pair of skis", "map of the coast",
          "violin case", "bag of marbles"]  # fmt: skip
NUMBERS = range(1, 751)
RANDOM_NEGATIVES = 4
RERANK_NEGATIVES = 9


def main(out: Path = Path(__file__).parent / "lockers", held_out: float = 0.1, seed: int = 0) -> None:
    """Write the corpus, queries, qrels and train.jsonl under ``out``."""
    rng = random.Random(seed)
    lockers = [(hall, number) for hall in HALLS for number in NUMBERS]
    passages = {
        f"p{i:05d}": f"Locker {number} in the {hall} hall holds the {rng.choice(THINGS)}."
        for i, (hall, number) in enumerate(lockers)
    }
    queries = {
        f"q{i:05d}": f"what is kept in locker {in_words(number)} of the {hall} hall?"
        for i, (hall, number) in enumerate(lockers)
    }
    query_ids = sorted(queries)
    rng.shuffle(query_ids)
    cut = int(len(query_ids) * held_out)
    splits = {"test": sorted(query_ids[:cut]), "train": sorted(query_ids[cut:])}
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    _write_jsonl(out / "corpus.jsonl", [{"_id": k, "title": "", "text": v} for k, v in passages.items()])
    _write_jsonl(out / "queries.jsonl", [{"_id": k, "text": v} for k, v in queries.items()])
    for split, ids in splits.items():
        lines = ["query-id\tcorpus-id\tscore", *(f"{q}\tp{q[1:]}\t1" for q in ids)]
        (out / "qrels" / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    passage_ids = sorted(passages)
    rows = []
    for query_id in splits["train"]:
        positive = f"p{query_id[1:]}"
        negatives = [p for p in rng.sample(passage_ids, RANDOM_NEGATIVES + 1) if p != positive][:RANDOM_NEGATIVES]
        rows.append(
            {"query": queries[query_id], "positive": passages[positive], "negatives": [passages[n] for n in negatives]}
        )
    _write_jsonl(out / "train.jsonl", rows)
    groups = []
    for query_id in splits["test"]:
        hall = lockers[int(query_id[1:])][0]
        same_hall = [f"p{i:05d}" for i, (h, _) in enumerate(lockers) if h == hall and i != int(query_id[1:])]
        negatives = rng.sample(same_hall, RERANK_NEGATIVES)
        groups.append(
            {
                "query": queries[query_id],
                "positive": passages[f"p{query_id[1:]}"],
                "negatives": [passages[n] for n in negatives],
            }
        )
    _write_jsonl(out / "test.jsonl", groups)


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


if __name__ == "__main__":
    main()
