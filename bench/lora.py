"""LoRA and DoRA training steps: automodel-peft side by side with HF peft, same model, targets and rank.

Both libraries adapt the same seeded Llama (about 21.7M parameters, fp32) and batch, rank 16 on
every Linear but the LM head; a step is forward + backward + AdamW. Step times come from one
process that alternates a step of each library (so machine load hits both alike); peak memory
from a fresh process per library. Prints one table and writes bench/results/lora.csv.

    python bench/lora.py --steps 10 --threads 1   # about a minute and a half on a 2-core CPU
    python bench/lora.py --steps 20 --device cuda

Memory is the peak above what the process held before the first step: resident memory
(VmHWM, reset through /proc/self/clear_refs) on the CPU, torch.cuda.max_memory_allocated on CUDA.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import time
from importlib.metadata import version
from pathlib import Path

import torch
from _measure import peak_mib, reset_peak, write_csv

RESULTS = Path(__file__).parent / "results" / "lora.csv"
MODEL = {
    "vocab_size": 8192,
    "hidden_size": 512,
    "intermediate_size": 1376,
    "num_hidden_layers": 4,
    "num_attention_heads": 8,
    "num_key_value_heads": 8,
    "max_position_embeddings": 512,
    "tie_word_embeddings": False,
}
RANK, ALPHA, DROPOUT = 16, 32, 0.05
BATCH, SEQ_LEN, WARMUP = 4, 128, 3
LIBRARIES = ("automodel-peft", "peft")
VARIANTS = ("lora", "dora")
COLUMNS = [  # (table heading, CSV field)
    ("variant", "variant"),
    ("trainable", "trainable"),
    ("automodel-peft ms", "automodel_peft_ms"),
    ("peft ms", "peft_ms"),
    ("ratio", "time_ratio"),
    ("automodel-peft MiB", "automodel_peft_mib"),
    ("peft MiB", "peft_mib"),
    ("ratio", "memory_ratio"),
]


def build_model(library: str, variant: str, device: str) -> torch.nn.Module:
    """The seeded Llama with rank-16 adapters on every Linear except lm_head, from ``library``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**MODEL)
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config).to(device)
    use_dora = variant == "dora"
    if library == "peft":
        import peft

        adapter = peft.LoraConfig(
            r=RANK, lora_alpha=ALPHA, lora_dropout=DROPOUT, target_modules="all-linear", use_dora=use_dora
        )
        return peft.get_peft_model(model, adapter)
    from automodel.peft import LoRAConfig, apply_lora

    adapter = LoRAConfig(r=RANK, alpha=ALPHA, dropout=DROPOUT, match_all_linear=True, use_dora=use_dora)
    return apply_lora(model, adapter)


class Trainer:
    """One library's model, optimizer and batch: ``step()`` runs forward + backward + AdamW and returns the loss."""

    def __init__(self, library: str, variant: str, device: str) -> None:
        self.model = build_model(library, variant, device).train()
        self.trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(self.trainable, lr=1e-4)
        ids = torch.randint(0, MODEL["vocab_size"], (BATCH, SEQ_LEN), generator=torch.Generator().manual_seed(1))
        self.ids = ids.to(device)
        self.device = device

    def step(self) -> float:
        """One optimizer step on the fixed batch; returns its loss."""
        loss = self.model(input_ids=self.ids, labels=self.ids).loss
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.device == "cuda":
            torch.cuda.synchronize()
        return loss.item()


def measure_memory(library: str, variant: str, device: str) -> dict:
    """In a fresh process: the peak memory of two training steps above the loaded model, and what was trained."""
    trainer = Trainer(library, variant, device)
    start_mib = reset_peak(torch.device(device))
    first_loss = trainer.step()
    trainer.step()
    return {
        "params": sum(p.numel() for p in trainer.model.parameters()),
        "trainable": sum(p.numel() for p in trainer.trainable),
        "peak_mib": peak_mib(torch.device(device)) - start_mib,
        "first_loss": first_loss,
    }


def measure_time(variant: str, steps: int, device: str) -> dict[str, float]:
    """Median step time (ms) of each library, their steps interleaved so machine load hits both alike."""
    trainers = {library: Trainer(library, variant, device) for library in LIBRARIES}
    times: dict[str, list[float]] = {library: [] for library in LIBRARIES}
    for step in range(WARMUP + steps):
        for library, trainer in trainers.items():
            begin = time.perf_counter()
            trainer.step()
            if step >= WARMUP:
                times[library].append(1000 * (time.perf_counter() - begin))
    return {library: statistics.median(values) for library, values in times.items()}


def main() -> None:
    """Measure both variants with both libraries, each measurement in a fresh process; print and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per library, after 3 warmup steps")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (default: torch's choice; 1 is steadier on a busy machine)"
    )
    args = parser.parse_args()
    spawn = multiprocessing.get_context("spawn")
    threads = (torch.set_num_threads, (args.threads,)) if args.threads else (None, ())
    rows = []
    for variant in VARIANTS:
        memory = {}
        for library in LIBRARIES:  # a fresh process each: no allocator state carried between measurements
            with spawn.Pool(1, *threads) as pool:
                memory[library] = pool.apply(measure_memory, (library, variant, args.device))
        with spawn.Pool(1, *threads) as pool:
            median_ms = pool.apply(measure_time, (variant, args.steps, args.device))
        ours, theirs = memory["automodel-peft"], memory["peft"]
        if ours["trainable"] != theirs["trainable"] or abs(ours["first_loss"] - theirs["first_loss"]) > 1e-4:
            raise SystemExit(f"{variant}: the two libraries do not train the same thing: {ours} vs {theirs}")
        rows.append(
            {
                "variant": variant,
                "device": args.device,
                "params": ours["params"],
                "trainable": ours["trainable"],
                "steps": args.steps,
                "threads": args.threads or torch.get_num_threads(),
                "automodel_peft_ms": round(median_ms["automodel-peft"], 1),
                "peft_ms": round(median_ms["peft"], 1),
                "time_ratio": round(median_ms["automodel-peft"] / median_ms["peft"], 3),
                "automodel_peft_mib": round(ours["peak_mib"], 1),
                "peft_mib": round(theirs["peak_mib"], 1),
                "memory_ratio": round(ours["peak_mib"] / theirs["peak_mib"], 3),
                "torch": version("torch"),
                "peft": version("peft"),
            }
        )
    print(
        f"Llama {rows[0]['params'] / 1e6:.1f}M params fp32 on {args.device} ({args.threads or torch.get_num_threads()} "
        f"threads), batch {BATCH}x{SEQ_LEN} tokens, "
        f"r={RANK} on every Linear but lm_head, dropout {DROPOUT}; median of {args.steps} steps "
        "(forward+backward+AdamW); memory = peak above the loaded model. Ratios: automodel-peft / peft."
    )
    widths = [max(len(title), *(len(str(row[key])) for row in rows)) for title, key in COLUMNS]
    print("  ".join(title.rjust(width) for (title, _), width in zip(COLUMNS, widths, strict=True)))
    for row in rows:
        print("  ".join(str(row[key]).rjust(width) for (_, key), width in zip(COLUMNS, widths, strict=True)))
    write_csv(RESULTS, rows)


if __name__ == "__main__":
    main()
