"""mine: hard negatives for a retrieval training file, from a bi-encoder's nearest passages.

    automodel mine retrieval -c cfg.yaml
    python -m automodel.recipes.retrieval.mine -c cfg.yaml [--section.key VALUE ...]

Reads (query, positive) rows from ``mining.input``, embeds the corpus (``mining.corpus``, a
BEIR ``corpus.jsonl``, plus every positive; the positives alone when no corpus is given) a
chunk of ``chunk_rows`` passages at a time, searches each query's nearest passages exactly
(torch, on the GPU when there is one; faiss with ``use_faiss: true``), optionally rescores
them with ``cross_encoder:``, applies the filters of ``mining.py`` and writes a JSONL of
``{"query", "positive", "negatives"}`` rows that ``finetune.retrieval`` reads as it is. The
corpus embeddings are kept, chunk by chunk, beside the output until it is written, so an
interrupted run on a large corpus resumes where it stopped.
"""

from __future__ import annotations

import bisect
import json
import os
import random
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from automodel.config import (
    ConfigNode,
    build_section,
    check_config,
    config_error,
    errors_named_by,
    load_config_from_argv,
    plain_section,
)
from automodel.data import load_hf_dataset
from automodel.data.retrieval import iter_corpus
from automodel.models import BiEncoder, cross_encoder_scores, load_tokenizer
from automodel.recipes.retrieval.evaluation import encode_texts
from automodel.recipes.retrieval.finetune import build_tokenizer
from automodel.recipes.retrieval.mining import MiningSettings, choose_negatives, filter_candidates
from automodel.recipes.retrieval.schema import MINE, MINE_REQUIRED
from automodel.training import exact_top_k, main_reporting_user_errors, set_seed

# This route's config, as `automodel <command> <domain> --help` lists it (read through the entry point).
SCHEMA, REQUIRED = MINE, MINE_REQUIRED

MINING_KEYS = tuple(MINE["mining"])
SETTING_KEYS = (
    "num_negatives",
    "range_min",
    "range_max",
    "sampling_strategy",
    "max_score",
    "min_score",
    "absolute_margin",
    "relative_margin",
)


def read_pairs(cfg: ConfigNode, options: dict) -> tuple[list[str], list[list[str]]]:
    """Return the unique queries of ``mining.input`` (first-seen order) and each one's positives."""
    with errors_named_by(cfg, "mining"):
        table = load_hf_dataset(options["input"])
    names = table.column_names
    query = options.get("query_column") or ("query" if "query" in names else names[0])
    positive = options.get("positive_column") or ("positive" if "positive" in names else names[1])
    for key, column in (("query_column", query), ("positive_column", positive)):
        if column not in names:
            raise config_error(
                cfg, f"names column {column!r}, which {options['input']} does not have", f"mining.{key}",
                f"its columns are {', '.join(names)}",
            )  # fmt: skip
    positives: dict[str, list[str]] = {}
    for number, (text, value) in enumerate(zip(table[query], table[positive], strict=True)):
        found = [value] if isinstance(value, str) else value
        if not isinstance(text, str) or not found or not all(isinstance(v, str) for v in found):
            raise config_error(
                cfg, f"row {number} of {options['input']} has no query and positive texts", "mining.input",
                "fix or remove the row",
            )  # fmt: skip
        for item in found:
            if item not in positives.setdefault(text, []):
                positives[text].append(item)
    return list(positives), list(positives.values())


def corpus_texts(options: dict, positives: list[list[str]]) -> list[str]:
    """The passages to search: the corpus file's (when given) then the positives, each text once."""
    texts: dict[str, None] = {}
    if options.get("corpus"):
        for _, chunk in iter_corpus(options["corpus"]):
            texts.update(dict.fromkeys(chunk))
    for row in positives:
        texts.update(dict.fromkeys(row))
    return list(texts)


def corpus_embedding_chunks(
    model: BiEncoder, tokenizer: Any, corpus: list[str], cache: Path, options: dict, device: torch.device
) -> Iterator[torch.Tensor]:
    """Yield the corpus embeddings ``chunk_rows`` at a time, read from ``cache`` when an earlier run saved them."""
    rows = int(options.get("chunk_rows", 16384))
    cache.mkdir(parents=True, exist_ok=True)
    for number, start in enumerate(range(0, len(corpus), rows)):
        path = cache / f"corpus_{number:06d}_{rows}.safetensors"
        if path.is_file():
            yield load_file(path)["embeddings"].to(device)
            continue
        embeddings = encode_texts(
            model,
            tokenizer,
            corpus[start : start + rows],
            prompt=model.passage_prompt,
            max_length=int(options.get("passage_max_length", model.max_seq_length or 256)),
            batch_size=int(options.get("batch_size", 64)),
            device=device,
        )
        save_file({"embeddings": embeddings.contiguous()}, path.with_suffix(".partial"))
        os.replace(path.with_suffix(".partial"), path)
        yield embeddings.to(device)


def search(query_embeddings: torch.Tensor, chunks: Iterator[torch.Tensor], k: int, use_faiss: bool) -> tuple:
    """Each query's ``k`` nearest passages ``(scores, indices)``: exact in torch, or with a faiss flat index."""
    if not use_faiss:
        return exact_top_k(query_embeddings, chunks, k)
    import faiss

    corpus = torch.cat([chunk.float().cpu() for chunk in chunks]).numpy()
    index = faiss.IndexFlatIP(corpus.shape[1])
    index.add(corpus)
    scores, indices = index.search(query_embeddings.float().cpu().numpy(), min(k, corpus.shape[0]))
    return torch.from_numpy(scores), torch.from_numpy(indices)


def run_mining(cfg: ConfigNode) -> dict[str, int]:
    """Mine the negatives ``cfg`` asks for, write ``mining.output`` and return the counts it reports."""
    check_config(cfg, MINE, MINE_REQUIRED, "mine (retrieval)", "examples/retrieval")
    options = plain_section(cfg, "mining", MINING_KEYS)
    for key in ("input", "output"):
        if not options.get(key):
            raise config_error(cfg, f"needs `{key}`", "mining", f"set mining.{key}")
    if options.get("margin") is not None and options.get("absolute_margin") is None:
        options["absolute_margin"] = options["margin"]
    settings = MiningSettings(**{k: options[k] for k in SETTING_KEYS if options.get(k) is not None})
    output = Path(options["output"])
    if output.exists() and not options.get("overwrite", False):
        raise config_error(cfg, f"{output} exists already", "mining.output", "choose another file or set overwrite")
    if options.get("use_faiss"):
        try:
            import faiss  # noqa: F401
        except ImportError:
            raise config_error(
                cfg, "use_faiss needs faiss, which is not installed", "mining.use_faiss",
                "pip install 'automodel-recipes-retrieval[faiss]', or set use_faiss: false for exact torch search",
            ) from None  # fmt: skip
    rng = random.Random(set_seed(int(cfg.get("seed", 42))))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model = build_section(cfg, "model")
    if not isinstance(model, BiEncoder):
        raise config_error(cfg, "must build a bi-encoder", "model", "use automodel.models.AutoModelBiEncoder")
    model = model.to(device).eval()
    tokenizer = build_tokenizer(cfg, model)
    queries, positives = read_pairs(cfg, options)
    corpus = corpus_texts(options, positives)
    corpus_row = {text: row for row, text in enumerate(corpus)}
    range_max = settings.candidate_range(max(len(p) for p in positives), "cross_encoder" in cfg)
    problem = settings.problem(range_max)
    if problem:
        raise config_error(cfg, problem, "mining")
    query_max_length = int(options.get("query_max_length", model.max_seq_length or 256))
    query_embeddings = encode_texts(
        model, tokenizer, queries, prompt=model.query_prompt, max_length=query_max_length,
        batch_size=int(options.get("batch_size", 64)), device=device,
    ).to(device)  # fmt: skip
    cache = output.with_name(output.name + ".embeddings")
    positive_rows = [{corpus_row[p] for p in row} for row in positives]
    positive_embeddings: dict[int, torch.Tensor] = {}
    chunks = keeping_rows(
        corpus_embedding_chunks(model, tokenizer, corpus, cache, options, device),
        set().union(*positive_rows),
        positive_embeddings,
    )
    candidates = range_max + max(len(p) for p in positives) + 1
    scores, indices = search(query_embeddings, chunks, candidates, bool(options.get("use_faiss")))
    scores, indices = scores.to(device), indices.to(device)
    owners = [q for q, row in enumerate(positives) for _ in row]
    if "cross_encoder" in cfg:
        reranker = build_cross_encoder(cfg, device)
        flat = [p for row in positives for p in row]
        positive_scores = _cross_scores(reranker, [queries[q] for q in owners], flat, options)
        scores = _rescore(reranker, queries, corpus, indices, options)
    else:
        embedded = torch.stack([positive_embeddings[corpus_row[p]] for row in positives for p in row])
        positive_scores = torch.nn.functional.cosine_similarity(query_embeddings[owners], embedded)
    lowest = lowest_per_query(positive_scores, owners, len(queries), device)
    filtered = filter_candidates(
        scores, indices, lowest, positive_rows, [corpus_row.get(q, -1) for q in queries], settings
    )
    chosen = choose_negatives(filtered, indices, settings, range_max, rng)
    counts = _write(output, queries, positives, corpus, chosen, settings.num_negatives)
    shutil.rmtree(cache, ignore_errors=True)
    return counts


def keeping_rows(
    chunks: Iterator[torch.Tensor], rows: set[int], kept: dict[int, torch.Tensor]
) -> Iterator[torch.Tensor]:
    """Yield ``chunks`` (consecutive corpus rows) unchanged, keeping the embedding of each of ``rows`` in ``kept``."""
    ordered, start = sorted(rows), 0
    for chunk in chunks:
        inside = ordered[bisect.bisect_left(ordered, start) : bisect.bisect_left(ordered, start + chunk.shape[0])]
        selected = chunk[torch.tensor(inside, dtype=torch.long, device=chunk.device) - start]
        kept.update(zip(inside, selected, strict=True))
        start += chunk.shape[0]
        yield chunk


def lowest_per_query(scores: torch.Tensor, owners: list[int], queries: int, device: torch.device) -> torch.Tensor:
    """Each query's lowest score over its positives: ``scores[i]`` belongs to query ``owners[i]``."""
    lowest = torch.full((queries,), float("inf"), device=device)
    index = torch.tensor(owners, device=device)
    return lowest.scatter_reduce(0, index, scores.to(device).float(), reduce="amin")


def build_cross_encoder(cfg: ConfigNode, device: torch.device) -> tuple[Any, Any]:
    """The ``cross_encoder:`` model (in eval mode on ``device``) and the tokenizer beside it."""
    model = build_section(cfg, "cross_encoder").to(device).eval()
    with errors_named_by(cfg, "cross_encoder"):
        return model, load_tokenizer(cfg.cross_encoder.get("pretrained_model_name_or_path"))


def _cross_scores(reranker: tuple[Any, Any], queries: list[str], passages: list[str], options: dict) -> Any:
    """The cross-encoder's scores of (query, passage) pairs."""
    model, tokenizer = reranker
    pairs = list(zip(queries, passages, strict=True))
    return cross_encoder_scores(model, tokenizer, pairs, batch_size=int(options.get("batch_size", 64)))


def _rescore(
    reranker: tuple[Any, Any], queries: list[str], corpus: list[str], indices: torch.Tensor, options: dict
) -> torch.Tensor:
    """The cross-encoder's scores of every query's candidates (-inf where a query has no candidate)."""
    flat_queries, flat_passages = [], []
    for row, candidates in enumerate(indices.tolist()):
        for index in candidates:
            flat_queries.append(queries[row])
            flat_passages.append(corpus[index] if index >= 0 else "")
    scores = _cross_scores(reranker, flat_queries, flat_passages, options).float().reshape(indices.shape)
    scores = scores.to(indices.device)
    return scores.masked_fill(indices < 0, -float("inf"))


def _write(
    output: Path, queries: list[str], positives: list[list[str]], corpus: list[str], chosen: list, wanted: int
) -> dict[str, int]:
    """Write the rows with at least one negative (under a temporary name, then renamed); return the counts."""
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    counts = {"queries": len(queries), "written": 0, "fewer": 0, "none": 0}
    with partial.open("w", encoding="utf-8") as handle:
        for query, found, negatives in zip(queries, positives, chosen, strict=True):
            if not negatives:
                counts["none"] += 1
                continue
            counts["fewer"] += len(negatives) < wanted
            positive = found[0] if len(found) == 1 else found
            row = {"query": query, "positive": positive, "negatives": [corpus[i] for i, _ in negatives]}
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            counts["written"] += 1
    os.replace(partial, output)
    return counts


def main(cfg: ConfigNode | None = None) -> int:
    """Run hard-negative mining on ``cfg`` (default: the config named by ``-c`` in sys.argv); return 0."""
    cfg = load_config_from_argv() if cfg is None else cfg
    counts = run_mining(cfg)
    output = plain_section(cfg, "mining", MINING_KEYS)["output"]
    print(
        f"mined negatives for {counts['queries']} queries into {output}: {counts['written']} rows; "
        f"{counts['fewer']} got fewer negatives than asked, {counts['none']} got none and were left out",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main_reporting_user_errors(main))

__all__ = ["corpus_texts", "main", "read_pairs", "run_mining"]
