"""Model FLOPs utilization on this machine: how close training runs to the measured GEMM peak.

Two measurements, each against the same peak (the best dense fp32 matmul rate measured here,
square GEMMs of 1024 and 2048; bf16 and 8192 on a GPU), every run in a fresh process:

- benchmark recipe: ``automodel.recipes.llm.benchmark`` on a GEMM-bound Llama (hidden 1024,
  4 layers, mock rows of 256 tokens, batch 8, fused AdamW), eager and with ``compile.enabled``;
  its MFU counts every token (the rows hold no padding).
- train_ft on variable-length data: the instruction data and 50M Llama of
  ``bench/sft_vs_hf_trainer.py`` (answers of a few to a few hundred tokens), trained once
  through with 32 samples per optimizer step by transformers.Trainer (padded batches, its
  defaults), and by train_ft with its fastest settings (4 packed rows of about 8 samples each,
  ChunkedCrossEntropy, fused AdamW), eager and compiled. Only useful tokens count:
  the FLOPs are ``training_flops_per_token`` of each sample at its own length, summed, so
  padding, and attention across the samples packed in a row, earn nothing. ``whole run``
  divides by the wall time of the whole loop; ``steady`` leaves out the first 3 optimizer
  steps (compilation, allocator warm-up) for the train_ft rows.

Prints one table and writes bench/results/mfu.csv.

    python bench/mfu.py             # about 8 minutes on a 2-core CPU
"""

from __future__ import annotations

import argparse
import multiprocessing
import tempfile
import time
from pathlib import Path

import torch
from _measure import write_csv
from sft_vs_hf_trainer import BATCH, MODEL, _dataset, automodel_config, run_trainer, write_data

RESULTS = Path(__file__).parent / "results" / "mfu.csv"
GEMM_BOUND_MODEL = {
    "model_type": "llama",
    "vocab_size": 2048,
    "hidden_size": 1024,
    "intermediate_size": 4096,
    "num_hidden_layers": 4,
    "num_attention_heads": 16,
    "num_key_value_heads": 16,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
}
STEADY_AFTER = 3
ROWS_PER_STEP = 4


def measure_peak() -> float:
    """The best dense matmul TFLOP/s of the compute dtype here (fp32 on CPU, bf16 on CUDA)."""
    from automodel.training import measure_peak_tflops

    if torch.cuda.is_available():
        return measure_peak_tflops(torch.bfloat16, "cuda", seconds=2.0)
    return max(measure_peak_tflops(torch.float32, "cpu", size=size, seconds=2.0) for size in (1024, 2048))


def run_benchmark_recipe(folder: str, compiled: bool, peak: float) -> dict:
    """Run the benchmark recipe on the GEMM-bound Llama; return its tokens/s, TFLOP/s and MFU."""
    from automodel.config import config_from_dict
    from automodel.recipes.llm.benchmark import BenchmarkRecipeForNextTokenPrediction

    config = {
        "seed": 0,
        "model": {"_target_": "automodel.models.AutoModelForCausalLM.from_config", "config": GEMM_BOUND_MODEL},
        "benchmark": {"warmup_steps": 2, "steps": 4, "seq_length": 256, "peak_tflops": peak},
        "step_scheduler": {"global_batch_size": 8, "local_batch_size": 8},
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": 1e-4, "fused": True},
        "checkpoint": {"dir": str(Path(folder) / ("bench_compiled" if compiled else "bench_eager"))},
        "compile": {"enabled": compiled},
    }
    recipe = BenchmarkRecipeForNextTokenPrediction(config_from_dict(config))
    recipe.setup()
    results = recipe.run_benchmark()
    return {"tokens_per_s": results["tokens_per_s"], "tflops_per_s": results["tflops_per_s"], "mfu": results["mfu"]}


def run_train_ft(folder: str, compiled: bool, pack: int) -> dict:
    """Train the fastest train_ft settings once through; return whole-run and steady-state seconds and tokens."""
    from automodel.config import config_from_dict
    from automodel.recipes.llm.train_ft import TrainFinetuneRecipeForNextTokenPrediction

    config = automodel_config(Path(folder), fastest=True, pack=pack)
    config["compile"] = {"enabled": compiled}
    config["optimizer"]["fused"] = True
    config["step_scheduler"].update(global_batch_size=ROWS_PER_STEP, local_batch_size=ROWS_PER_STEP)
    recipe = TrainFinetuneRecipeForNextTokenPrediction(config_from_dict(config))
    recipe.setup()
    steps: list[tuple[float, int]] = []
    train_step = recipe._train_step

    def timed_step(micro_batches: list[dict]):
        started = time.perf_counter()
        result = train_step(micro_batches)
        steps.append((time.perf_counter() - started, int(result.num_tokens)))
        return result

    recipe._train_step = timed_step
    started = time.perf_counter()
    recipe.run_train_validation_loop()
    seconds = time.perf_counter() - started
    steady = steps[STEADY_AFTER:]
    return {
        "seconds": seconds,
        "steady_seconds": sum(s for s, _ in steady),
        "steady_tokens": sum(t for _, t in steady),
        "tokens": sum(t for _, t in steps),
    }


def main() -> None:
    """Measure the peak, run every configuration in its own process, print the table and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    args = parser.parse_args()
    from automodel.models import training_flops_per_token

    context = multiprocessing.get_context("spawn")

    def in_process(function, *arguments):
        with context.Pool(1) as pool:
            return pool.apply(function, arguments)

    peak = in_process(measure_peak)
    rows = []
    with tempfile.TemporaryDirectory(prefix="automodel-mfu-") as tmp:
        folder = Path(tmp)
        for compiled in (False, True):
            result = in_process(run_benchmark_recipe, str(folder), compiled, peak)
            name = "benchmark recipe" + (", compiled" if compiled else "")
            rows.append({"run": name, "tokens_per_s": result["tokens_per_s"], "tflops_per_s": result["tflops_per_s"]})

        write_data(folder, args.samples)
        from transformers import AutoConfig, AutoModelForCausalLM

        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(AutoConfig.for_model(**MODEL)).save_pretrained(folder / "initial")
        lengths = [len(item["input_ids"]) for item in _dataset(folder, "train")]
        useful = sum(lengths)
        flops_per_useful_token = sum(n * training_flops_per_token(MODEL, n) for n in lengths) / useful
        pack = max(max(lengths), round(BATCH * useful / len(lengths)))
        trainer = in_process(run_trainer, str(folder), ROWS_PER_STEP * BATCH)
        rows.append({"run": "transformers.Trainer, whole run", "tokens_per_s": useful / trainer["seconds"]})
        for compiled in (False, True):
            result = in_process(run_train_ft, str(folder), compiled, pack)
            name = "train_ft fastest" + (", compiled" if compiled else "")
            rows.append({"run": f"{name}, whole run", "tokens_per_s": result["tokens"] / result["seconds"]})
            rows.append({"run": f"{name}, steady", "tokens_per_s": result["steady_tokens"] / result["steady_seconds"]})
        for row in rows[2:]:
            row["tflops_per_s"] = row["tokens_per_s"] * flops_per_useful_token / 1e12
    for row in rows:
        row["mfu"] = row["tflops_per_s"] / peak
        row["peak_tflops"] = peak
    device = "cuda" if torch.cuda.is_available() else f"cpu, {torch.get_num_threads()} threads"
    print(f"measured GEMM peak {peak:.4g} TFLOP/s ({device})")
    print(f"train_ft rows: {args.samples} variable-length samples, {useful} useful tokens")
    print(f"{'run':<40}{'useful tok/s':>14}{'TFLOP/s':>10}{'MFU':>8}")
    for row in rows:
        print(f"{row['run']:<40}{row['tokens_per_s']:>14.0f}{row['tflops_per_s']:>10.4f}{100 * row['mfu']:>7.1f}%")
    write_csv(RESULTS, rows)


if __name__ == "__main__":
    main()
