"""SFT throughput and memory: automodel (default and fastest settings) against transformers.Trainer, one run.

All runs fine-tune the same initial Llama (about 50M parameters, fp32, saved once and loaded by
each) on the same variable-length instruction data (count from A to B in words: answers of
a few to a few hundred tokens, learnable so the losses mean something), once through the
same samples, with AdamW at a constant learning rate and gradient clipping at 1.0:

- automodel default: ``train_ft`` with padded batches of 8 samples (what a YAML gets without options).
- automodel fastest: ``packed_sequence`` (padding-free rows holding 8 samples' worth of tokens on
  average, so an optimizer step sees as many samples as the others) and ``ChunkedCrossEntropy``.
- transformers.Trainer: batches of 8 samples padded to their longest (``DataCollatorForSeq2Seq``).
- TRL's SFTTrainer with packing, when ``trl`` is installed.

Each run is a fresh process. Useful tokens/s counts only real (non-padding) tokens over the
wall time of training; peak RSS is the process's VmHWM; the loss is each final model's mean
token loss on 64 held-out samples, computed the same way for every run. Prints one table
and writes bench/results/sft_vs_hf_trainer.csv.

    python bench/sft_vs_hf_trainer.py --samples 256   # about 10 minutes on a 2-core CPU
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
RESULTS = Path(__file__).parent / "results" / "sft_vs_hf_trainer.csv"
TOKENIZER = ROOT / "examples" / "data" / "tokenizer"
MODEL = {
    "model_type": "llama",
    "vocab_size": 512,
    "hidden_size": 640,
    "intermediate_size": 1728,
    "num_hidden_layers": 10,
    "num_attention_heads": 10,
    "num_key_value_heads": 10,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": False,
}
BATCH, LR, SEQ_LENGTH = 8, 1e-3, 1024
ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]  # fmt: skip
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def in_words(n: int) -> str:
    """``n`` (0..999) in words."""
    hundreds, rest = divmod(n, 100)
    parts = [f"{ONES[hundreds]} hundred"] if hundreds else []
    if rest or not hundreds:
        tens, ones = divmod(rest, 10)
        parts.append(ONES[rest] if rest < 20 else TENS[tens] + (f"-{ONES[ones]}" if ones else ""))
    return " ".join(parts)


def write_data(folder: Path, samples: int) -> None:
    """Write train.jsonl (``samples`` rows) and validation.jsonl (64 rows) of the counting task."""
    rng = random.Random(0)
    for name, count in (("train", samples), ("validation", 64)):
        with (folder / f"{name}.jsonl").open("w") as handle:
            for _ in range(count):
                start = rng.randrange(0, 900)
                stop = start + int(rng.paretovariate(1.2)) % 60 + 1
                answer = ", ".join(in_words(n) for n in range(start, min(stop, 999) + 1))
                handle.write(json.dumps({"question": f"Count from {start} to {stop} in words.", "answer": answer}))
                handle.write("\n")


def _dataset(folder: Path, split: str):
    from automodel.data.llm import ColumnMappedTextInstructionDataset
    from automodel.models import load_tokenizer

    return ColumnMappedTextInstructionDataset(
        str(folder / f"{split}.jsonl"),
        {"question": "question", "answer": "answer"},
        load_tokenizer(str(TOKENIZER)),
        seq_length=SEQ_LENGTH,
    )


def automodel_config(folder: Path, fastest: bool, pack: int) -> dict:
    """The train_ft config of the default (padded batches of 8) or fastest (packed rows, chunked loss) run."""
    out = folder / ("automodel_fastest" if fastest else "automodel_default")
    dataset = {
        "_target_": "automodel.data.llm.ColumnMappedTextInstructionDataset",
        "path_or_dataset_id": str(folder / "train.jsonl"),
        "column_mapping": {"question": "question", "answer": "answer"},
        "seq_length": SEQ_LENGTH,
    }
    batch = 1 if fastest else BATCH
    config = {
        "seed": 0,
        "model": {
            "_target_": "automodel.models.AutoModelForCausalLM.from_pretrained",
            "pretrained_model_name_or_path": str(folder / "initial"),
        },
        "tokenizer": {"_target_": "automodel.models.load_tokenizer", "pretrained_model_name_or_path": str(TOKENIZER)},
        "dataset": dataset,
        "step_scheduler": {"global_batch_size": batch, "local_batch_size": batch, "num_epochs": 1, "log_interval": 1},
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": LR, "weight_decay": 0.0},
        "clip_grad_norm": {"max_norm": 1.0},
        "logging": {"progress_bar": False},
        "checkpoint": {"dir": str(out), "enabled": False},
    }
    if fastest:
        config["packed_sequence"] = {"enabled": True, "packed_sequence_size": pack}
        config["loss_fn"] = {"_target_": "automodel.training.ChunkedCrossEntropy", "chunk_size": 1024}
    return config


def run_automodel(folder: str, fastest: bool, pack: int) -> dict:
    """Train with train_ft (default or fastest settings); return seconds, peak RSS and the saved model dir."""
    from automodel.config import config_from_dict
    from automodel.recipes.llm.train_ft import TrainFinetuneRecipeForNextTokenPrediction

    config = automodel_config(Path(folder), fastest, pack)
    out = Path(config["checkpoint"]["dir"])
    recipe = TrainFinetuneRecipeForNextTokenPrediction(config_from_dict(config))
    recipe.setup()
    started = time.perf_counter()
    recipe.run_train_validation_loop()
    seconds = time.perf_counter() - started
    recipe.hf_model.save_pretrained(out / "model")  # outside the timed part, as Trainer.save_model below
    return {"seconds": seconds, "peak_rss_mib": status_mib("VmHWM"), "model": str(out / "model")}


def _hf_rows(folder: Path, split: str) -> list[dict]:
    """The automodel dataset's samples in Trainer's format (whole sequences; labels shifted by the model)."""
    rows = []
    for item in _dataset(folder, split):
        ids = [*list(item["input_ids"]), int(item["labels"][-1])]
        labels = [-100, *[int(t) for t in item["labels"]]]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return rows


def run_trainer(folder: str, batch: int = BATCH) -> dict:
    """Train with transformers.Trainer on padded batches of ``batch`` samples; return seconds, peak RSS and
    the saved model dir."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, DataCollatorForSeq2Seq, Trainer, TrainingArguments

    data = Path(folder)
    out = data / "hf_trainer"
    tokenizer = AutoTokenizer.from_pretrained(TOKENIZER)
    model = AutoModelForCausalLM.from_pretrained(data / "initial", attn_implementation="sdpa")
    args = TrainingArguments(
        output_dir=str(out),
        per_device_train_batch_size=batch,
        num_train_epochs=1,
        learning_rate=LR,
        lr_scheduler_type="constant",
        weight_decay=0.0,
        max_grad_norm=1.0,
        optim="adamw_torch",
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        seed=0,
        use_cpu=not torch.cuda.is_available(),
        disable_tqdm=True,
    )
    collator = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
    trainer = Trainer(
        model=model, args=args, train_dataset=Dataset.from_list(_hf_rows(data, "train")), data_collator=collator
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.save_model(str(out / "model"))
    return {"seconds": seconds, "peak_rss_mib": status_mib("VmHWM"), "model": str(out / "model")}


def run_trl(folder: str, pack: int) -> dict:
    """Train with TRL's SFTTrainer and its packing; return seconds, peak RSS and the saved model dir."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    data = Path(folder)
    out = data / "trl"
    rows = [{"input_ids": r["input_ids"], "completion_mask": [int(t != -100) for t in r["labels"]]}
            for r in _hf_rows(data, "train")]  # fmt: skip
    args = SFTConfig(
        output_dir=str(out), per_device_train_batch_size=1, packing=True, max_length=pack, num_train_epochs=1,
        learning_rate=LR, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=1.0, logging_steps=1,
        save_strategy="no", report_to=[], seed=0, use_cpu=not torch.cuda.is_available(), disable_tqdm=True,
        completion_only_loss=True,
    )  # fmt: skip
    trainer = SFTTrainer(
        model=AutoModelForCausalLM.from_pretrained(data / "initial", attn_implementation="sdpa"),
        args=args,
        train_dataset=Dataset.from_list(rows),
        processing_class=AutoTokenizer.from_pretrained(TOKENIZER),
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    trainer.save_model(str(out / "model"))
    return {"seconds": seconds, "peak_rss_mib": status_mib("VmHWM"), "model": str(out / "model")}


@torch.no_grad()
def held_out_loss(model_dir: str, folder: str) -> float:
    """Mean token loss of the model in ``model_dir`` on the held-out answers (the same code for every run)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    total, tokens = 0.0, 0
    for item in _dataset(Path(folder), "validation"):
        logits = model(input_ids=torch.as_tensor(item["input_ids"])[None]).logits[0]
        labels = torch.as_tensor(item["labels"])
        keep = labels != -100
        total += float(torch.nn.functional.cross_entropy(logits[keep], labels[keep], reduction="sum"))
        tokens += int(keep.sum())
    return total / tokens


def main() -> None:
    """Run every trainer in its own process, print the table with ratios to Trainer, and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="automodel-bench-") as tmp:
        folder = Path(tmp)
        write_data(folder, args.samples)
        from transformers import AutoConfig, AutoModelForCausalLM

        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(AutoConfig.for_model(**MODEL)).save_pretrained(folder / "initial")
        params = sum(p.numel() for p in AutoModelForCausalLM.from_pretrained(folder / "initial").parameters())
        lengths = [len(item["input_ids"]) for item in _dataset(folder, "train")]
        useful = sum(lengths)
        pack = max(max(lengths), round(BATCH * useful / len(lengths)))  # a row holds about BATCH samples
        runs = [("transformers.Trainer", run_trainer, ()), ("automodel default", run_automodel, (False, pack)),
                ("automodel fastest", run_automodel, (True, pack))]  # fmt: skip
        try:
            import trl  # noqa: F401

            runs.append(("TRL SFTTrainer packed", run_trl, (pack,)))
        except ImportError:
            print("trl is not installed: the TRL SFTTrainer row is skipped")
        context = multiprocessing.get_context("spawn")
        rows = []
        for name, run, extra in runs:
            with context.Pool(1) as pool:
                result = pool.apply(run, (str(folder), *extra))
            rows.append(
                {
                    "trainer": name,
                    "useful_tokens_per_s": useful / result["seconds"],
                    "seconds": result["seconds"],
                    "peak_rss_mib": result["peak_rss_mib"],
                    "held_out_loss": held_out_loss(result["model"], str(folder)),
                }
            )
    base = rows[0]
    for row in rows:
        row["speed_ratio"] = row["useful_tokens_per_s"] / base["useful_tokens_per_s"]
        row["memory_ratio"] = row["peak_rss_mib"] / base["peak_rss_mib"]
        row["loss_ratio"] = row["held_out_loss"] / base["held_out_loss"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"Llama {params / 1e6:.1f}M fp32, {args.samples} samples ({useful} useful tokens), batch {BATCH}, {device}")
    print(f"{'trainer':<24}{'useful tok/s':>13}{'x Trainer':>10}{'peak RSS MiB':>14}{'x Trainer':>10}"
          f"{'held-out loss':>15}{'x Trainer':>10}")  # fmt: skip
    for row in rows:
        print(
            f"{row['trainer']:<24}{row['useful_tokens_per_s']:>13.0f}{row['speed_ratio']:>10.2f}"
            f"{row['peak_rss_mib']:>14.0f}{row['memory_ratio']:>10.2f}{row['held_out_loss']:>15.4f}"
            f"{row['loss_ratio']:>10.3f}"
        )
    write_csv(RESULTS, rows)


if __name__ == "__main__":
    main()
