"""Data-parallel scaling: step time, peak memory and loading per process, 1 process vs 2 under DDP and FSDP2.

Every layout trains the same seeded Llama (42.1M parameters, fp32) on the same global
batch with AdamW; a step is forward + backward + optimizer. The 2-process layouts split the
batch over 2 ranks (gloo on the CPU, nccl on GPUs), each with half the CPU threads, so on a
CPU the comparison is one process with all cores against two processes sharing them.
Prints one table and writes bench/results/scaling.csv.

    python bench/scaling.py --steps 8    # under a minute on a 2-core CPU
    python bench/scaling.py --steps 20   # on a machine with 2 GPUs: CUDA and nccl are used when visible

Memory is each process's peak above what it held before building the model: resident memory
(VmHWM, reset through /proc/self/clear_refs) on the CPU, torch.cuda.max_memory_allocated on
CUDA; the table shows the largest over the ranks.

The load columns time loading a saved 373.9M-parameter Llama (fp32, 1.5 GB of safetensors in files of
at most 200 MB) from
nothing to a model ready to train on each rank, and its peak host memory per process (resident
memory, mapped file pages included): one process with transformers' ``from_pretrained``; DDP
the same on each rank, then the wrapper; FSDP2 as the LLM recipe does it (``defer_weights``,
``fully_shard``, ``materialize_model``: each rank reads only its slices).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from _measure import peak_mib, reset_peak, status_mib, write_csv

from automodel.distributed.config import parse_distributed_config, resolve_sizes
from automodel.distributed.mesh import build_device_mesh, data_parallel_coordinates
from automodel.distributed.parallelize import parallelize_model
from automodel.distributed.testing import run_on_ranks

RESULTS = Path(__file__).parent / "results" / "scaling.csv"
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
GLOBAL_BATCH, SEQ_LEN, WARMUP = 8, 128, 2
LAYOUTS = (("1 process", 1, None), ("2 x ddp", 2, "ddp"), ("2 x fsdp2", 2, "fsdp2"))
LOAD_MODEL = {
    **MODEL,
    "hidden_size": 1024,
    "intermediate_size": 2816,
    "num_hidden_layers": 24,
    "num_attention_heads": 16,
}
LOAD_MODEL |= {"num_key_value_heads": 16, "vocab_size": 32000}


def save_load_model(folder: Path) -> int:
    """Write LOAD_MODEL (seeded random weights) to ``folder`` with ``save_pretrained`` in files of at most 200 MB
    (a 70B checkpoint comes in some 30 files); return its parameter count."""
    from automodel.models import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config({"model_type": "llama", **LOAD_MODEL}, seed=0, torch_dtype="float32")
    model.save_pretrained(folder, max_shard_size="200MB")
    return sum(p.numel() for p in model.parameters())


def load_layout(strategy: str | None, folder: str) -> dict:
    """Load ``folder`` on this rank as ``strategy`` would, ready to train; return the seconds and peak memory."""
    import torch.distributed as dist

    from automodel.models import AutoModelForCausalLM, defer_weights, materialize_model

    world = dist.get_world_size() if dist.is_initialized() else 1
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    baseline = status_mib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    started = time.perf_counter()
    settings = parse_distributed_config({"strategy": strategy} if strategy else None)
    mesh = build_device_mesh(resolve_sizes(settings, world, device.type), device.type) if world > 1 else None
    with defer_weights(strategy == "fsdp2"):
        model = AutoModelForCausalLM.from_pretrained(folder, torch_dtype="float32")
    if strategy != "fsdp2":
        model = model.to(device)
    model = parallelize_model(model, mesh, settings, device)
    materialize_model(model, device)
    with torch.no_grad():  # every weight read once, as the first step would: mapped pages are paged in
        sum(float(p.sum()) for p in model.parameters())
    seconds = time.perf_counter() - started
    return {"load_s": seconds, "load_peak_mib": status_mib("VmHWM") - baseline}


def train_layout(strategy: str | None, steps: int) -> dict:
    """Train ``steps`` timed steps (after warm-up) under ``strategy`` on this rank; return its timings and memory."""
    import torch.distributed as dist
    from transformers import LlamaConfig, LlamaForCausalLM

    world = dist.get_world_size() if dist.is_initialized() else 1
    device = torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    baseline = reset_peak(device)
    torch.manual_seed(0)
    config = LlamaConfig(**MODEL)
    config._attn_implementation = "sdpa"
    model = LlamaForCausalLM(config).to(device)
    settings = parse_distributed_config({"strategy": strategy} if strategy else None)
    mesh = build_device_mesh(resolve_sizes(settings, world, device.type), device.type) if world > 1 else None
    model = parallelize_model(model, mesh, settings, device)
    dp_rank, dp_size = data_parallel_coordinates(mesh)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rows = GLOBAL_BATCH // dp_size
    generator = torch.Generator().manual_seed(dp_rank)
    times = []
    for step in range(WARMUP + steps):
        tokens = torch.randint(0, MODEL["vocab_size"], (rows, SEQ_LEN + 1), generator=generator).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        logits = model(input_ids=tokens[:, :-1], use_cache=False).logits
        loss = F.cross_entropy(logits.flatten(0, 1).float(), tokens[:, 1:].flatten(), reduction="sum")
        (loss / (GLOBAL_BATCH * SEQ_LEN)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step >= WARMUP:
            times.append(time.perf_counter() - started)
    params = sum(p.numel() for p in model.parameters()) * (dp_size if strategy == "fsdp2" else 1)
    return {"median_s": statistics.median(times), "peak_mib": peak_mib(device) - baseline, "params": params}


def main() -> None:
    """Run every layout, print the table with ratios to one process, and write the CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    try:
        load_params = save_load_model(work)
        loads = [
            run_on_ranks(load_layout, world, args=(strategy, str(work)), timeout_s=1800, preload=["transformers"])
            for _, world, strategy in LAYOUTS
        ]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, world, strategy in LAYOUTS:
        ranks = run_on_ranks(
            train_layout, world, args=(strategy, args.steps), timeout_s=1800, preload=["transformers"], backend=None
        )
        step_s = max(r["median_s"] for r in ranks)
        params = ranks[0]["params"]
        rows.append(
            {"layout": name, "processes": world, "step_s": step_s, "peak_mib": max(r["peak_mib"] for r in ranks)}
        )
    for row, ranks in zip(rows, loads, strict=True):
        row["load_s"] = max(r["load_s"] for r in ranks)
        row["load_peak_mib"] = max(r["load_peak_mib"] for r in ranks)
    base = rows[0]
    for row in rows:
        row["load_memory_ratio"] = row["load_peak_mib"] / base["load_peak_mib"]
        row["tokens_per_s"] = GLOBAL_BATCH * SEQ_LEN / row["step_s"]
        row["speedup"] = base["step_s"] / row["step_s"]
        row["memory_ratio"] = row["peak_mib"] / base["peak_mib"]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"Llama {params / 1e6:.1f}M parameters, fp32, global batch {GLOBAL_BATCH} x {SEQ_LEN}, {device}")
    print(f"loading: Llama {load_params / 1e6:.1f}M parameters, fp32, from safetensors files, host memory")
    header = f"{'layout':<12}{'step s':>9}{'tokens/s':>11}{'speedup':>9}{'peak extra MiB/proc':>21}{'memory ratio':>14}"
    print(header + f"{'load s':>9}{'load peak MiB/proc':>20}{'load memory ratio':>19}")
    for row in rows:
        print(
            f"{row['layout']:<12}{row['step_s']:>9.3f}{row['tokens_per_s']:>11.0f}{row['speedup']:>9.2f}"
            f"{row['peak_mib']:>21.0f}{row['memory_ratio']:>14.2f}"
            f"{row['load_s']:>9.2f}{row['load_peak_mib']:>20.0f}{row['load_memory_ratio']:>19.2f}"
        )
    write_csv(RESULTS, rows)


if __name__ == "__main__":
    main()
