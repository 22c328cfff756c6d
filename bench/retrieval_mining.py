"""Hard-negative mining over a large corpus: automodel's mine.retrieval against sentence-transformers, one run.

Writes ``--passages`` short synthetic passages in the style of examples/data/lockers ("Locker
1234 in the amber hall holds the brass key.", every one different) as a BEIR corpus.jsonl, and
2,000 (query, positive) rows whose positives are passages of that corpus. Both tools then
mine with all-MiniLM-L6-v2 (32 tokens, batches of 256), 4 negatives per query drawn at random
from its 20 nearest passages, exact search (no faiss):

- automodel: ``run_mining`` on examples/retrieval/tiny_mine.yaml pointed at the base model and
  these files, the
  corpus embedded ``chunk_rows`` (8192) passages at a time (each chunk kept on disk, only the
  running top-k kept in memory), output written as JSONL.
- sentence-transformers: ``util.mine_hard_negatives`` with the corpus as a list of strings,
  ``output_format="n-tuple"``, the resulting dataset written as JSONL.

Each tool runs in a fresh process with ``--threads`` torch threads; the seconds count from
loading the model to the written output, and peak RSS is the process's VmHWM at the end.
Prints one table with ratios against sentence-transformers and writes
bench/results/retrieval_mining.csv.

    python bench/retrieval_mining.py --passages 100000   # MiniLM embeds 150-1000 short passages/s on 2 cores
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import random
import tempfile
import time
from pathlib import Path

import torch
from _measure import status_mib, write_csv

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "retrieval_mining.csv"
CONFIG = ROOT / "examples" / "retrieval" / "tiny_mine.yaml"
QUERIES, NEGATIVES, RANGE_MAX, CHUNK_ROWS, BATCH, MAX_LENGTH, SEED = 2000, 4, 20, 8192, 256, 32, 1234
HALLS = ["north", "south", "east", "west", "upper", "lower", "amber", "azure", "cedar", "copper", "coral", "crimson",
         "ebony", "garden", "granite", "harbour", "ivory", "jade", "linen", "maple", "marble", "olive", "silver",
         "slate", "willow"]  # fmt: skip
ITEMS = ["tennis racket", "camping stove", "brass key", "violin case", "spare tyre", "box of letters", "chess set",
         "red umbrella", "first-aid kit", "telescope", "toolbox", "sleeping bag", "kettle", "map of the city",
         "winter coat", "bicycle pump", "photo album", "lantern", "fishing rod", "sewing machine"]  # fmt: skip


def write_data(folder: Path, passages: int) -> None:
    """Write corpus.jsonl (``passages`` different passages) and pairs.jsonl (QUERIES query/positive rows)."""
    rng = random.Random(SEED)
    per_hall = -(-passages // len(HALLS))
    lockers = [(number, hall) for hall in HALLS for number in range(1, per_hall + 1)][:passages]
    texts = [f"Locker {number} in the {hall} hall holds the {rng.choice(ITEMS)}." for number, hall in lockers]
    with (folder / "corpus.jsonl").open("w") as handle:
        for row, text in enumerate(texts):
            handle.write(json.dumps({"_id": f"d{row}", "text": text}) + "\n")
    with (folder / "pairs.jsonl").open("w") as handle:
        for row in rng.sample(range(passages), QUERIES):
            number, hall = lockers[row]
            query = f"what is kept in locker {number} of the {hall} hall?"
            handle.write(json.dumps({"query": query, "positive": texts[row]}) + "\n")


def run_automodel(folder: str, threads: int) -> dict:
    """Mine with automodel's run_mining; return the seconds, the peak RSS and the rows written."""
    torch.set_num_threads(threads)
    from automodel.config import load_config
    from automodel.recipes.retrieval.mine import run_mining
    from automodel.recipes.retrieval.pretrained import all_minilm_l6_v2

    data = Path(folder)
    overrides = [
        f"--model.pretrained_model_name_or_path={all_minilm_l6_v2()}",
        f"--mining.input={data / 'pairs.jsonl'}",
        f"--mining.corpus={data / 'corpus.jsonl'}",
        f"--mining.output={data / 'automodel.jsonl'}",
        f"--+mining.chunk_rows={CHUNK_ROWS}",
        f"--mining.num_negatives={NEGATIVES}",
        f"--mining.range_max={RANGE_MAX}",
        "--mining.sampling_strategy=random",
        f"--mining.batch_size={BATCH}",
        f"--mining.query_max_length={MAX_LENGTH}",
        f"--mining.passage_max_length={MAX_LENGTH}",
        f"--seed={SEED}",
    ]
    config = load_config(CONFIG, overrides)
    started = time.perf_counter()
    counts = run_mining(config)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_rss_mib": status_mib("VmHWM"), "rows": counts["written"]}


def run_sentence_transformers(folder: str, threads: int) -> dict:
    """Mine with sentence-transformers' mine_hard_negatives; return the seconds, the peak RSS and the rows written."""
    torch.set_num_threads(threads)
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    from automodel.recipes.retrieval.pretrained import all_minilm_l6_v2

    data = Path(folder)
    pairs = Dataset.from_list([json.loads(line) for line in (data / "pairs.jsonl").read_text().splitlines()])
    corpus = [json.loads(line)["text"] for line in (data / "corpus.jsonl").read_text().splitlines()]
    started = time.perf_counter()
    model = SentenceTransformer(all_minilm_l6_v2(), device="cpu")
    model.max_seq_length = MAX_LENGTH
    mined = mine_hard_negatives(
        pairs, model, corpus=corpus, range_max=RANGE_MAX, num_negatives=NEGATIVES, sampling_strategy="random",
        output_format="n-tuple", batch_size=BATCH, verbose=False,
    )  # fmt: skip
    mined.to_json(str(data / "sentence_transformers.jsonl"))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "peak_rss_mib": status_mib("VmHWM"), "rows": len(mined)}


def main() -> None:
    """Mine with both tools, each in its own process; print the table and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each mining process")
    args = parser.parse_args()
    runs = [("sentence-transformers", run_sentence_transformers), ("automodel", run_automodel)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="automodel-bench-") as tmp:
        write_data(Path(tmp), args.passages)
        context = multiprocessing.get_context("spawn")
        for name, run in runs:
            with context.Pool(1) as pool:
                result = pool.apply(run, (tmp, args.threads))
            rows.append(
                {
                    "tool": name,
                    "passages": args.passages,
                    "queries": QUERIES,
                    "rows_written": result["rows"],
                    "seconds": result["seconds"],
                    "peak_rss_gib": result["peak_rss_mib"] / 1024,
                }
            )
    base = rows[0]
    for row in rows:
        row["time_ratio"] = row["seconds"] / base["seconds"]
        row["memory_ratio"] = row["peak_rss_gib"] / base["peak_rss_gib"]
    print(
        f"all-MiniLM-L6-v2, {args.passages} passages, {QUERIES} queries, {NEGATIVES} of the {RANGE_MAX} nearest, "
        f"{args.threads} threads, cpu"
    )
    print(f"{'tool':<24}{'rows':>6}{'s':>9}{'x ST':>7}{'peak RSS GiB':>14}{'x ST':>7}")
    for row in rows:
        print(
            f"{row['tool']:<24}{row['rows_written']:>6}{row['seconds']:>9.1f}{row['time_ratio']:>7.2f}"
            f"{row['peak_rss_gib']:>14.2f}{row['memory_ratio']:>7.2f}"
        )
    write_csv(RESULTS, rows)


if __name__ == "__main__":
    main()
