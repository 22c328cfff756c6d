"""Checkpoints: automodel-checkpoint side by side with save_pretrained/from_pretrained and torch.save/torch.load.

Every measurement runs in a fresh process on the same seeded Llama (about 300M parameters,
fp32, CPU, untied embeddings), built from a config with random weights; saves and loads
are the median of 3 runs:

- save: the model's weights to disk (``save_hf_weights`` / ``save_pretrained`` /
  ``torch.save(state_dict)``), 5GB shards for both safetensors writers;
- load: those files into a model, then one read of every weight (memory-mapped weights are
  paged in, as a first forward would). ``s`` leaves out building the model for ours and torch
  (they fill a model built beforehand; ``from_pretrained`` builds its own), ``total s`` goes
  from nothing to a model holding the weights for all; ``defer_weights`` + ``materialize_model``
  builds on the meta device and reads the files into it (the LLM recipe's path under FSDP2,
  here on one process);
- 2 x FSDP2 (gloo): the same files loaded sharded over two processes (each rank reads only its
  slices), then saved from the shards as consolidated files of at most 200 MB (rank 0 gathers
  one tensor at a time and writes each file when it is full, so no rank holds the whole model);
  the slowest rank's time, the largest rank's peak;
- stall: how long ``Checkpointer.save`` (HF weights + DCP model/AdamW state + RNG) blocks the
  training loop, synchronous vs ``async_save=True`` (the median of the 3 saves after the
  process's first; the CSV has the first too), and ``total s`` until its files are complete;
- durability: what the manifest's xxh3_128 checksums and fsync cost a synchronous save. One
  process saves the same state again and again, the four variants in turn (a warm-up round,
  then 5 rounds, each in another order; the page cache written back before each save):
  checksums and fsync as shipped, the checksums replaced by nothing, every ``os.fsync`` (DCP's
  own included) made a no-op, and both; medians. Taking turns within one process keeps the
  disk's drift out of the ratios, not its noise: the last two rows time the checksums and the
  fsync calls inside the shipped saves themselves, which the noise does not blur.

Prints one table and writes bench/results/checkpoint.csv.

    python bench/checkpoint.py                 # 300M parameters: a few minutes on 2 CPU cores
    python bench/checkpoint.py --params 50M    # a quick run
    python bench/checkpoint.py --only save-load   # saves and loads only (results/checkpoint_save_load.csv)

Memory is the peak resident memory above what the process held before the measured call
(VmHWM, reset through /proc/self/clear_refs), in GiB; ``total GiB`` of a load starts before
the model is built, so all three include the model itself; a stall's starts before the
first of its saves. Pages of files mapped by safetensors count as resident. Ratios are
the row's time over ours (stall rows: over async; durability rows: over the save with neither).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import re
import shutil
import statistics
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from _measure import status_mib, write_csv

RESULTS = Path(__file__).parent / "results" / "checkpoint.csv"
VOCAB = 32000
SAVES = {"save_ours": "automodel save_hf_weights", "save_hf": "save_pretrained", "save_torch": "torch.save"}
LOADS = {
    "load_ours": "automodel load_hf_weights_into",
    "load_hf": "from_pretrained",
    "load_torch": "torch.load + load_state_dict",
    "load_meta": "automodel defer_weights + materialize_model",
}
FSDP2 = {
    "fsdp2_load": "2 x FSDP2: defer_weights + fully_shard + materialize_model",
    "fsdp2_save": "2 x FSDP2: save_hf_weights, 200MB files",
}
STALLS = {"stall_sync": "Checkpointer.save", "stall_async": "Checkpointer.save async"}
DURABILITY = {
    "shipped": "checksums + fsync (the default)",
    "no_checksums": "fsync, no checksums",
    "no_fsync": "checksums, no fsync",
    "neither": "neither",
    "checksums": "default: of which computing checksums",
    "fsync": "default: of which in fsync (DCP's too)",
}
DURABILITY_ROUNDS = 5  # a save's time varies by a few seconds with the disk: more rounds than REPEATS
REPEATS = 3


def parse_params(text: str) -> int:
    """Return a parameter count from "300M", "1.2B" or "300000000"."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([MB]?)", text.strip().upper())
    if not match:
        raise argparse.ArgumentTypeError(f"{text!r} is not a parameter count such as 300M or 1.2B")
    return int(float(match.group(1)) * {"": 1, "M": 10**6, "B": 10**9}[match.group(2)])


def llama_config(params: int) -> dict[str, Any]:
    """LlamaConfig keywords for about ``params`` parameters: hidden 1024 (512 under 200M), layers to fit."""
    hidden = 1024 if params >= 200 * 10**6 else 512
    intermediate = 2816 if hidden == 1024 else 1408
    heads = hidden // 64
    per_layer = 2 * hidden * hidden + 2 * hidden * (hidden // 2) + 3 * hidden * intermediate + 2 * hidden
    layers = max(1, round((params - 2 * VOCAB * hidden) / per_layer))
    return {
        "vocab_size": VOCAB,
        "hidden_size": hidden,
        "intermediate_size": intermediate,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads // 2,
        "tie_word_embeddings": False,
    }


def rss_gib(field: str) -> float:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in GiB."""
    return status_mib(field) / 1024


def start_peak() -> float:
    """Flush written files to disk, reset the peak resident size to the current one; return the current one.

    Without the flush, the files of the previous measurement would be written back during this one.
    """
    os.sync()
    Path("/proc/self/clear_refs").write_text("5")
    return rss_gib("VmRSS")


def parameter_count(config: dict[str, Any]) -> int:
    """The model's parameter count, from a copy on the meta device (no memory, no init)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    with torch.device("meta"):
        return LlamaForCausalLM(LlamaConfig(**config)).num_parameters()


def build(config: dict[str, Any]) -> torch.nn.Module:
    """The seeded Llama with random fp32 weights."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**config)).eval()


def measure(name: str, config: dict[str, Any], work: str) -> dict[str, Any]:
    """Run one measurement in this (fresh) process; files go to and come from ``work``."""
    work_dir = Path(work)
    if name in LOADS:
        return _load(name, config, work_dir)
    model = build(config)
    if name in STALLS:
        return _stall(name, model, work_dir)
    if name == "durability":
        return _durability(model, work_dir)
    from automodel.checkpoint import save_hf_weights

    times, extras = [], []
    for _ in range(REPEATS):  # each save replaces the files of the one before
        base = start_peak()
        begin = time.perf_counter()
        if name == "save_ours":
            save_hf_weights(model.state_dict(), work_dir / "ours")
        elif name == "save_hf":
            model.save_pretrained(work_dir / "hf", max_shard_size="5GB")
        else:
            torch.save(model.state_dict(), work_dir / "model.pt")
        times.append(time.perf_counter() - begin)
        extras.append(rss_gib("VmHWM") - base)
    seconds, extra = statistics.median(times), max(extras)
    return {"seconds": seconds, "extra_gib": extra, "total_seconds": seconds, "total_gib": extra}


def _load(name: str, config: dict[str, Any], work_dir: Path) -> dict[str, float]:
    calls, totals, call_extras, total_extras = [], [], [], []
    for _ in range(REPEATS):  # each time from nothing to a model holding the weights
        call, total, call_extra, total_extra = _load_once(name, config, work_dir)
        calls.append(call)
        totals.append(total)
        call_extras.append(call_extra)
        total_extras.append(total_extra)
    return {
        "seconds": statistics.median(calls),
        "extra_gib": max(call_extras),
        "total_seconds": statistics.median(totals),
        "total_gib": max(total_extras),
    }


def _load_once(name: str, config: dict[str, Any], work_dir: Path) -> tuple[float, float, float, float]:
    """Return the loading call's seconds, those from nothing, and the peak memory of each (GiB)."""
    from transformers import AutoModelForCausalLM

    from automodel.checkpoint import load_hf_weights_into

    ready_base = start_peak()
    begin = time.perf_counter()
    base = build_peak = ready_base
    if name == "load_hf":
        loading = begin
        model = AutoModelForCausalLM.from_pretrained(work_dir / "hf")
    elif name == "load_meta":
        from automodel.models import AutoModelForCausalLM as AutomodelCausalLM
        from automodel.models import defer_weights, materialize_model

        loading = begin
        with defer_weights():
            model = AutomodelCausalLM.from_pretrained(work_dir / "hf", torch_dtype="float32")
        materialize_model(model, "cpu")
    else:
        model = build(config)
        build_peak = rss_gib("VmHWM")
        base, loading = start_peak(), time.perf_counter()
        if name == "load_ours":
            load_hf_weights_into(model, work_dir / "ours")
        else:
            model.load_state_dict(torch.load(work_dir / "model.pt", weights_only=True))
    with torch.no_grad():  # read every weight once, as a first forward would: memory-mapped ones are paged in
        sum(float(p.sum()) for p in model.parameters())
    end = time.perf_counter()
    peak = rss_gib("VmHWM")
    del model
    gc.collect()
    return end - loading, end - begin, peak - base, max(peak, build_peak) - ready_base


def fsdp2_rank(work: str) -> dict[str, dict[str, float]]:
    """On one of 2 ranks: load the saved model sharded over both, then save it as consolidated HF files.

    Returns each operation's seconds and this rank's peak resident memory above what it held before
    (GiB): the load from nothing to the rank's shards, and the save, where rank 0 gathers one
    tensor at a time and writes a file when it holds 200 MB.
    """
    from automodel.checkpoint import save_hf_weights
    from automodel.distributed import setup_parallelism
    from automodel.models import AutoModelForCausalLM, defer_weights, materialize_model

    parallel = setup_parallelism({"strategy": "fsdp2"})
    base, begin = start_peak(), time.perf_counter()
    with defer_weights():
        model = AutoModelForCausalLM.from_pretrained(Path(work) / "hf", torch_dtype="float32")
    model = parallel.parallelize(model)
    materialize_model(model, parallel.device)
    load = {"seconds": time.perf_counter() - begin, "extra_gib": rss_gib("VmHWM") - base}
    base, begin = start_peak(), time.perf_counter()
    save_hf_weights(model.state_dict(), Path(work) / "fsdp2", max_shard_size="200MB")
    save = {"seconds": time.perf_counter() - begin, "extra_gib": rss_gib("VmHWM") - base}
    return {"fsdp2_load": load, "fsdp2_save": save}


def _fsdp2(work: Path) -> dict[str, dict[str, float]]:
    """Run ``fsdp2_rank`` on 2 gloo processes; the slowest rank's time and the largest rank's memory."""
    from automodel.distributed.testing import run_on_ranks

    ranks = run_on_ranks(fsdp2_rank, 2, (str(work),), timeout_s=1800, preload=["transformers"])
    results = {}
    for name in FSDP2:
        seconds = max(rank[name]["seconds"] for rank in ranks)
        extra = max(rank[name]["extra_gib"] for rank in ranks)
        results[name] = {"seconds": seconds, "extra_gib": extra, "total_seconds": seconds, "total_gib": extra}
    return results


def _durability(model: torch.nn.Module, work_dir: Path) -> dict[str, dict[str, float]]:
    """Synchronous saves of every variant of DURABILITY in turn; the median seconds and peak memory of each."""
    import automodel.checkpoint.manifest as manifest
    from automodel.checkpoint import Checkpointer

    optimizer = _stepped_adamw(model)
    checkpointer = Checkpointer(work_dir / "durability", keep_last_n=1)
    real_digest, real_fsync = manifest.file_digest, os.fsync
    spent = {"checksums": 0.0, "fsync": 0.0}  # inside the save being measured

    def timed_digest(descriptor: int, size: int) -> str:
        begin = time.perf_counter()
        digest = real_digest(descriptor, size)
        spent["checksums"] += time.perf_counter() - begin
        return digest

    def timed_fsync(descriptor: int) -> None:
        begin = time.perf_counter()
        real_fsync(descriptor)
        spent["fsync"] += time.perf_counter() - begin

    variants = ["shipped", "no_checksums", "no_fsync", "neither"]
    seconds: dict[str, list[float]] = {name: [] for name in DURABILITY}
    peaks: dict[str, list[float]] = {name: [] for name in DURABILITY}
    step = 0
    try:
        for round_ in range(1 + DURABILITY_ROUNDS):  # round 0 warms up: fresh pages, first writes of the files
            for name in variants[round_ % 4 :] + variants[: round_ % 4]:
                manifest.file_digest = timed_digest if name in ("shipped", "no_fsync") else _no_digest
                os.fsync = timed_fsync if name in ("shipped", "no_checksums") else _no_fsync
                spent.update(checksums=0.0, fsync=0.0)
                step += 1
                base = start_peak()  # also writes back what the previous save left in the page cache
                begin = time.perf_counter()
                checkpointer.save(step, model=model, optimizer=optimizer)
                if not round_:
                    continue
                seconds[name].append(time.perf_counter() - begin)
                peaks[name].append(rss_gib("VmHWM") - base)
                if name == "shipped":  # where that save's time went (its memory too)
                    for part in spent:
                        seconds[part].append(spent[part])
                        peaks[part].append(peaks[name][-1])
    finally:
        manifest.file_digest, os.fsync = real_digest, real_fsync
    return {
        name: {
            "seconds": statistics.median(times),
            "extra_gib": max(peaks[name]),
            "total_seconds": statistics.median(times),
            "total_gib": max(peaks[name]),
        }
        for name, times in seconds.items()
    }


def _no_digest(descriptor: int, size: int) -> str:
    return ""


def _no_fsync(descriptor: int) -> None:
    pass


def _stepped_adamw(model: torch.nn.Module) -> torch.optim.Optimizer:
    """AdamW after one step on the model: it holds its two moments, so the state is 3x the weights."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    ids = torch.randint(0, VOCAB, (1, 16), generator=torch.Generator().manual_seed(1))
    model(input_ids=ids, labels=ids).loss.backward()
    optimizer.step()
    return optimizer


def _stall(name: str, model: torch.nn.Module, work_dir: Path) -> dict[str, float]:
    from automodel.checkpoint import Checkpointer

    optimizer = _stepped_adamw(model)
    checkpointer = Checkpointer(work_dir / name, async_save=name == "stall_async", keep_last_n=1)
    stalls, totals = [], []
    base = start_peak()
    for step in range(1 + REPEATS):  # the first save of a process also pays for fresh pages; a run saves again
        begin = time.perf_counter()
        checkpointer.save(step, model=model, optimizer=optimizer, write_model_files=model.config.save_pretrained)
        stalls.append(time.perf_counter() - begin)
        checkpointer.wait()
        totals.append(time.perf_counter() - begin)
    return {
        "seconds": statistics.median(stalls[1:]),
        "extra_gib": rss_gib("VmHWM") - base,
        "total_seconds": statistics.median(totals[1:]),
        "total_gib": rss_gib("VmHWM") - base,
        "first_save_seconds": stalls[0],
    }


def _row(operation: str, tool: str, result: dict[str, float], ours: dict[str, float]) -> dict[str, Any]:
    return {
        "operation": operation,
        "tool": tool,
        "seconds": round(result["seconds"], 2),
        "extra_gib": round(result["extra_gib"], 2),
        "total_seconds": round(result["total_seconds"], 2),
        "total_gib": round(result["total_gib"], 2),
        "time_ratio": round(result["seconds"] / ours["seconds"], 2),
        "total_time_ratio": round(result["total_seconds"] / ours["total_seconds"], 2),
        "first_save_seconds": round(result["first_save_seconds"], 2) if "first_save_seconds" in result else "",
    }


def _line(cells: list[str], widths: list[int]) -> str:
    """Operation and tool left-aligned, numbers right-aligned."""
    return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))


def main() -> None:
    """Run every measurement in its own process, print the table, write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=parse_params, default=300 * 10**6, help="model size, e.g. 300M or 50M")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    parser.add_argument("--only", choices=["all", "save-load"], default="all", help="save-load: skip stall, durability")
    args = parser.parse_args()
    config = llama_config(args.params)
    work = Path(tempfile.mkdtemp(prefix="bench-checkpoint-", dir=args.work))
    spawn = multiprocessing.get_context("spawn")
    results = {}
    try:
        names = [*SAVES, *LOADS] + ([*STALLS, "durability"] if args.only == "all" else [])
        for name in names:
            with spawn.Pool(1) as pool:  # a fresh process: no allocator state carried between measurements
                results[name] = pool.apply(measure, (name, config, str(work)))
            print(f"{name}: {results[name]}", flush=True)
        results.update(_fsdp2(work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rows = [_row("save", tool, results[n], results["save_ours"]) for n, tool in SAVES.items()]
    rows += [_row("load", tool, results[n], results["load_ours"]) for n, tool in LOADS.items()]
    rows += [_row("save", FSDP2["fsdp2_save"], results["fsdp2_save"], results["save_ours"])]
    rows += [_row("load", FSDP2["fsdp2_load"], results["fsdp2_load"], results["load_ours"])]
    if args.only == "all":
        rows += [_row("stall", tool, results[n], results["stall_async"]) for n, tool in STALLS.items()]
        durability = results["durability"]
        rows += [_row("durability", tool, durability[n], durability["neither"]) for n, tool in DURABILITY.items()]
    params = parameter_count(config)
    for row in rows:
        row.update(params=params, torch=version("torch"), transformers=version("transformers"))
        row.update(safetensors=version("safetensors"))
    print(
        f"\nLlama {params / 1e6:.1f}M params fp32 on CPU ({torch.get_num_threads()} threads), "
        f"{params * 4 / 2**30:.2f} GiB of weights. s, GiB: the call and its peak resident memory above the "
        "process before it (load: into a built model, then one read of every weight; from_pretrained builds "
        "its own; stall: until save() returns, median of the process's saves 2-4). total s, GiB: load from nothing, "
        "model building included; stall until the files are complete. ratio: row time / ours (stall: / async; "
        "durability: / neither)."
    )
    header = ["operation", "tool", "s", "GiB", "total s", "total GiB", "ratio", "total ratio"]
    keys = ["operation", "tool", "seconds", "extra_gib", "total_seconds", "total_gib", "time_ratio"]
    keys += ["total_time_ratio"]
    widths = [max(len(h), *(len(str(r[k])) for r in rows)) for h, k in zip(header, keys, strict=True)]
    print(_line(header, widths))
    for row in rows:
        print(_line([str(row[k]) for k in keys], widths))
    write_csv(RESULTS if args.only == "all" else RESULTS.with_name("checkpoint_save_load.csv"), rows)


if __name__ == "__main__":
    main()
