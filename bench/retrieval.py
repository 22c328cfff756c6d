"""Bi-encoder fine-tuning: automodel's finetune.retrieval recipe against sentence-transformers, one run.

Both fine-tune all-MiniLM-L6-v2 (mean pooling, normalized) on the same triplets: each row of
examples/data/lockers/train.jsonl with its first negative, shuffled once with the seed and
written to a temporary JSONL that both read in file order, so both see the same batches. Both
train the same number of steps of 32 queries (each with its positive and one hard negative;
every other passage of the batch is a negative too), truncate queries and passages to 32
tokens and pad to the batch's longest, use fused AdamW (lr 3e-4, no weight decay, so that
transformers' habit of leaving biases and LayerNorm weights out of it does not differ), 10
warmup steps then linear decay to 0, clipping at 1.0, the last incomplete batch of an epoch
dropped, and a temperature of 0.05 (sentence-transformers' scale 20):

- automodel: ``FinetuneRecipeForRetrieval`` on examples/retrieval/tiny_biencoder.yaml (whose
  optimizer is fused already) with ``InfoNCELoss``, no validation and no checkpoints
  (``checkpoint.enabled: false``).
- sentence-transformers: ``SentenceTransformerTrainer`` with ``MultipleNegativesRankingLoss``,
  ``adamw_torch_fused`` (transformers' default since torch 2.8), batches in file order (no
  duplicate filtering), no evaluator and no saving.

What still differs is each tool's own: dropout's random draws, and the first warmup step
(transformers starts at lr 0, automodel at lr / 10).

Each run is a fresh process with ``--threads`` torch threads. Queries/s counts the training
loop alone (not loading the model); peak RSS is the process's VmHWM at the end of training.
Both trained models are then saved and scored by the same sentence-transformers
``InformationRetrievalEvaluator`` (nDCG@10 on the lockers test split). Prints one table with
ratios against sentence-transformers and writes bench/results/retrieval.csv.

    python bench/retrieval.py --seeds 1234 1235   # about 8 minutes a seed on a 2-core CPU
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
RESULTS = Path(__file__).parent / "results" / "retrieval.csv"
CONFIG = ROOT / "examples" / "retrieval" / "tiny_biencoder.yaml"
LOCKERS = ROOT / "examples" / "data" / "lockers"
BATCH, LR, WEIGHT_DECAY, WARMUP, TEMPERATURE, MAX_LENGTH, ORDER_SEED = 32, 3e-4, 0.0, 10, 0.05, 32, 1234


def write_triplets(path: Path) -> int:
    """Write each lockers training row as ``{query, positive, negative}`` (its first negative), shuffled with the
    seed; return the rows."""
    rows = [json.loads(line) for line in (LOCKERS / "train.jsonl").read_text().splitlines() if line.strip()]
    random.Random(ORDER_SEED).shuffle(rows)
    with path.open("w") as handle:
        for row in rows:
            triplet = {"query": row["query"], "positive": row["positive"], "negative": row["negatives"][0]}
            handle.write(json.dumps(triplet) + "\n")
    return len(rows)


def automodel_overrides(folder: Path, steps: int, seed: int) -> list[str]:
    """Overrides of tiny_biencoder.yaml: the shared settings, the triplets in file order, no validation, no
    checkpoints."""
    return [
        f"--dataset.path_or_dataset_id={folder / 'triplets.jsonl'}",
        "--dataloader.shuffle=false",
        "--dataset.n_negatives=1",
        "--~validation_dataset",
        f"--step_scheduler.global_batch_size={BATCH}",
        f"--step_scheduler.local_batch_size={BATCH}",
        f"--step_scheduler.max_steps={steps}",
        "--~step_scheduler.val_check_interval",
        f"--collate.query_max_length={MAX_LENGTH}",
        f"--collate.passage_max_length={MAX_LENGTH}",
        f"--loss_fn.temperature={TEMPERATURE}",
        f"--optimizer.lr={LR}",
        f"--optimizer.weight_decay={WEIGHT_DECAY}",
        f"--lr_scheduler.warmup_steps={min(WARMUP, steps)}",
        "--clip_grad_norm.max_norm=1.0",
        f"--seed={seed}",
        f"--checkpoint.dir={folder / 'automodel'}",
        "--checkpoint.enabled=false",
        "--+logging.progress_bar=false",
        "--+logging.peak_tflops=1.0",  # skips the GEMM measurement at setup (only the logged MFU uses it)
    ]


def run_automodel(folder: str, steps: int, threads: int, seed: int) -> dict:
    """Train with finetune.retrieval; return the training loop's seconds, the peak RSS and the saved model dir."""
    torch.set_num_threads(threads)
    from automodel.config import load_config
    from automodel.recipes.retrieval.finetune import FinetuneRecipeForRetrieval

    out = Path(folder) / "automodel" / "model"
    recipe = FinetuneRecipeForRetrieval(load_config(CONFIG, automodel_overrides(Path(folder), steps, seed)))
    recipe.setup()
    started, cpu_started = time.perf_counter(), time.process_time()
    recipe.run_train_validation_loop()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = status_mib("VmHWM")
    recipe.hf_model.save_pretrained(out, recipe.tokenizer)
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mib": peak, "model": str(out)}


def in_file_order(dataset, batch_size: int, drop_last: bool, **_) -> torch.utils.data.BatchSampler:
    """sentence-transformers' default batch sampler over ``dataset`` in file order instead of a random one."""
    from sentence_transformers.base.sampler import DefaultBatchSampler

    sampler = torch.utils.data.SequentialSampler(dataset)
    return DefaultBatchSampler(sampler, batch_size=batch_size, drop_last=drop_last)


def run_sentence_transformers(folder: str, steps: int, threads: int, seed: int) -> dict:
    """Train with SentenceTransformerTrainer and MultipleNegativesRankingLoss; return the training's seconds,
    the peak RSS and the saved model dir."""
    torch.set_num_threads(threads)
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformer,
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    from automodel.recipes.retrieval.pretrained import all_minilm_l6_v2

    out = Path(folder) / "sentence_transformers"
    lines = (Path(folder) / "triplets.jsonl").read_text().splitlines()
    model = SentenceTransformer(all_minilm_l6_v2(), device="cpu")
    model.max_seq_length = MAX_LENGTH
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), per_device_train_batch_size=BATCH, max_steps=steps, learning_rate=LR,
        weight_decay=WEIGHT_DECAY, warmup_steps=min(WARMUP, steps), lr_scheduler_type="linear", max_grad_norm=1.0,
        optim="adamw_torch_fused", batch_sampler=in_file_order, dataloader_drop_last=True,
        eval_strategy="no", save_strategy="no", logging_steps=10, report_to="none", seed=seed, use_cpu=True,
        disable_tqdm=True,
    )  # fmt: skip
    trainer = SentenceTransformerTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([json.loads(line) for line in lines]),
        loss=MultipleNegativesRankingLoss(model, scale=1 / TEMPERATURE),
    )
    started, cpu_started = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    peak = status_mib("VmHWM")
    model.save_pretrained(str(out / "model"))
    return {"seconds": seconds, "cpu_seconds": cpu_seconds, "peak_rss_mib": peak, "model": str(out / "model")}


def held_out_ndcg(model_dir: str) -> float:
    """nDCG@10 of the model in ``model_dir`` on the lockers test split (sentence-transformers' evaluator)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    from automodel.data.retrieval import load_retrieval_eval_set

    eval_set = load_retrieval_eval_set(LOCKERS)
    model = SentenceTransformer(model_dir, device="cpu")
    model.max_seq_length = MAX_LENGTH
    evaluator = InformationRetrievalEvaluator(
        eval_set.queries,
        eval_set.corpus,
        {query: set(docs) for query, docs in eval_set.qrels.items()},
        batch_size=256,
        name="lockers",
        write_csv=False,
    )
    return float(evaluator(model)["lockers_cosine_ndcg@10"])


def main() -> None:
    """Train with both tools, each in its own process; score both models, print the table and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--threads", type=int, default=2, help="torch threads in each training process")
    parser.add_argument(
        "--seeds", type=int, nargs="+", default=[1234], help="a pair of runs per seed (dropout, initialisation)"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    runs = [("sentence-transformers", run_sentence_transformers), ("automodel", run_automodel)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="automodel-bench-") as tmp:
        triplets = write_triplets(Path(tmp) / "triplets.jsonl")
        context = multiprocessing.get_context("spawn")
        for seed in args.seeds:
            for name, run in runs:
                with context.Pool(1) as pool:
                    result = pool.apply(run, (tmp, args.steps, args.threads, seed))
                rows.append(
                    {
                        "tool": name,
                        "seed": seed,
                        "queries_per_s": args.steps * BATCH / result["seconds"],
                        "seconds": result["seconds"],
                        "peak_rss_gib": result["peak_rss_mib"] / 1024,
                        "ndcg_at_10": held_out_ndcg(result["model"]),
                    }
                )
    for row in rows:
        base = next(r for r in rows if r["seed"] == row["seed"] and r["tool"] == "sentence-transformers")
        row["speed_ratio"] = row["queries_per_s"] / base["queries_per_s"]
        row["memory_ratio"] = row["peak_rss_gib"] / base["peak_rss_gib"]
        row["ndcg_difference"] = row["ndcg_at_10"] - base["ndcg_at_10"]
    print(
        f"all-MiniLM-L6-v2, {args.steps} steps of {BATCH} queries (+1 hard negative each; {triplets} triplets), "
        f"{MAX_LENGTH} tokens, {args.threads} threads, cpu; ratios against sentence-transformers with the same seed"
    )
    print(
        f"{'tool':<24}{'seed':>6}{'queries/s':>10}{'x ST':>7}{'peak RSS GiB':>14}{'x ST':>7}{'nDCG@10':>9}{'- ST':>8}"
    )
    for row in rows:
        print(
            f"{row['tool']:<24}{row['seed']:>6}{row['queries_per_s']:>10.1f}{row['speed_ratio']:>7.2f}"
            f"{row['peak_rss_gib']:>14.2f}{row['memory_ratio']:>7.2f}{row['ndcg_at_10']:>9.4f}"
            f"{row['ndcg_difference']:>+8.4f}"
        )
    write_csv(RESULTS, rows)


if __name__ == "__main__":
    main()
