"""benchmark: training speed of a causal LM on fixed-length mock data (step time, tokens/s, TFLOP/s, MFU, memory).

    automodel benchmark llm -c cfg.yaml
    python -m automodel.recipes.llm.benchmark -c cfg.yaml [--section.key VALUE ...]

The model, ``peft:``, ``distributed:``, optimizer, LR schedule, loss and batch sizes are the
sections train_ft reads, built by its builders. ``benchmark:`` says how long to run:
``warmup_steps`` optimizer steps are run and not measured, then ``steps`` are. Without a
``dataset:`` section the data is ``MockDataset`` samples of ``benchmark.seq_length`` tokens
over the model's vocabulary. FLOPs are the analytic count of
``automodel.models.training_flops_per_token`` (the LoRA count with ``peft:``; DoRA's extra work
is not counted); MFU compares them with ``benchmark.peak_tflops`` per process, or with the
matmul speed measured on this device in the model's compute dtype. Rank 0 prints one table
and writes the numbers as JSON (``benchmark.json_path``, default
``<checkpoint.dir or runs/benchmark>/benchmark.json``). No checkpoint is written.
"""

from __future__ import annotations

import functools
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from automodel.config import ConfigNode, build_section, check_config, config_error, did_you_mean, errors_named_by
from automodel.data import build_dataloader as make_dataloader
from automodel.data.llm import MockDataset, default_collater
from automodel.distributed import Parallelism, unwrap_model
from automodel.models import defer_weights, materialize_model, training_flops_per_token
from automodel.peft import lora_modules
from automodel.recipes.llm.adapters import add_adapters, build_peft
from automodel.recipes.llm.checkpointing import build_checkpoint_config
from automodel.recipes.llm.schema import BENCHMARK, BENCHMARK_REQUIRED
from automodel.recipes.llm.train_ft import (
    build_loss_fn,
    build_lr_scheduler,
    build_model,
    build_optimizer,
    build_parallelism,
    compile_model,
    run_recipe,
    shards_before_weights,
)
from automodel.training import (
    BaseRecipe,
    StepScheduler,
    count_real_tokens,
    derive_grad_accumulation,
    main_reporting_user_errors,
    measure_peak_tflops,
    peak_memory_gib,
    set_seed,
    train_step,
)

# This route's config, as `automodel <command> <domain> --help` lists it (read through the entry point).
SCHEMA, REQUIRED = BENCHMARK, BENCHMARK_REQUIRED

BATCH_KEYS = ("global_batch_size", "local_batch_size", "grad_accumulation_steps")
DEFAULT_DIR = Path("runs/benchmark")


@dataclass(frozen=True)
class BenchmarkSettings:
    """The ``benchmark:`` section.

    Attributes:
        warmup_steps: optimizer steps run first and not measured (compilation, allocator, caches).
        steps: optimizer steps measured after the warm-up.
        seq_length: tokens per sample of the mock data; needed, and only allowed, without ``dataset:``.
        peak_tflops: this device's peak dense TFLOP/s in the compute dtype, per process; None measures it.
        json_path: where rank 0 writes the results; None: ``<checkpoint.dir or runs/benchmark>/benchmark.json``.
    """

    warmup_steps: int = 2
    steps: int = 10
    seq_length: int | None = None
    peak_tflops: float | None = None
    json_path: str | None = None


def _is_int(value: Any, least: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def build_benchmark_settings(cfg: ConfigNode) -> BenchmarkSettings:
    """Read and check ``benchmark:`` (all keys optional) against ``dataset:``; return BenchmarkSettings.

    Raises a ConfigError naming the key for an unknown key (with the closest), ``steps`` < 1,
    ``warmup_steps`` < 0, a non-positive ``seq_length`` or ``peak_tflops``, ``seq_length``
    missing without ``dataset:`` or given with it.
    """
    section = cfg.get("benchmark")
    options = section.to_container() if section is not None else {}
    known = [f.name for f in fields(BenchmarkSettings)]
    for key in options:
        if key not in known:
            raise config_error(section, "is not a benchmark setting", key, did_you_mean(str(key), known))
    checks = {
        "warmup_steps": (lambda v: _is_int(v, 0), "must be an integer of 0 or more"),
        "steps": (lambda v: _is_int(v, 1), "must be a positive integer (optimizer steps to measure)"),
        "seq_length": (lambda v: v is None or _is_int(v, 1), "must be a positive integer (tokens per sample)"),
        "peak_tflops": (
            lambda v: v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0),
            "must be a positive number (TFLOP/s of one device) or null to measure it",
        ),
        "json_path": (lambda v: v is None or isinstance(v, str), "must be a file path"),
    }
    for key, (valid, message) in checks.items():
        if key in options and not valid(options[key]):
            raise config_error(section, f"{message}, not {options[key]!r}", key)
    settings = BenchmarkSettings(**options)
    if "dataset" in cfg and settings.seq_length is not None:
        raise config_error(
            section,
            "sets the length of the default mock data, but the config has a `dataset:` section, whose samples "
            "set the length",
            "seq_length",
            "remove one of them",
        )
    if "dataset" not in cfg and settings.seq_length is None:
        raise config_error(
            cfg,
            "has no `seq_length`: without a `dataset:` section the benchmark runs on mock samples of "
            "benchmark.seq_length tokens",
            "benchmark",
            "add e.g. `benchmark: {seq_length: 2048}`",
        )
    return settings


def read_batch_sizes(cfg: ConfigNode, dp_size: int) -> dict[str, int]:
    """Return the batch-size keys of ``step_scheduler:`` after checking their arithmetic for ``dp_size`` ranks.

    The benchmark's length is ``benchmark.warmup_steps + benchmark.steps``, so any other
    step_scheduler key (``max_steps``, intervals) is a ConfigError naming it.
    """
    section = cfg.step_scheduler
    options = section.to_container()
    for key in options:
        if key not in BATCH_KEYS:
            raise config_error(
                section,
                "is not read by the benchmark, which takes only the batch sizes from step_scheduler and runs "
                "benchmark.warmup_steps + benchmark.steps optimizer steps",
                key,
                did_you_mean(str(key), BATCH_KEYS) or "remove it",
            )
    with errors_named_by(cfg, "step_scheduler"):
        derive_grad_accumulation(
            options.get("global_batch_size"),
            options.get("local_batch_size", 1),
            dp_size,
            options.get("grad_accumulation_steps"),
        )
    return {"local_batch_size": 1, **options}


def build_benchmark_dataset(cfg: ConfigNode, settings: BenchmarkSettings, vocab_size: int, num_samples: int) -> Any:
    """Build ``dataset:`` as written (it receives no tokenizer), or ``num_samples`` mock samples of
    ``settings.seq_length`` tokens below ``vocab_size``."""
    if "dataset" in cfg:
        return build_section(cfg, "dataset")
    return MockDataset(vocab_size, settings.seq_length, num_samples, seed=int(cfg.get("seed", 42)))


def compute_dtype(parallel: Parallelism, model: torch.nn.Module) -> torch.dtype:
    """The dtype the matmuls run in: FSDP2's ``mixed_precision.param_dtype`` when it applies, else the weights'."""
    param_dtype = parallel.config.mixed_precision.param_dtype
    if parallel.mesh is not None and parallel.config.strategy == "fsdp2" and param_dtype:
        return getattr(torch, str(param_dtype).removeprefix("torch."))
    return next(model.parameters()).dtype


def json_path(cfg: ConfigNode, settings: BenchmarkSettings) -> Path:
    """Return where rank 0 writes the results: ``benchmark.json_path``, else ``benchmark.json`` in
    ``checkpoint.dir`` (runs/benchmark without one). The ``checkpoint:`` keys are checked as train_ft checks them."""
    if settings.json_path:
        return Path(settings.json_path)
    checkpoint = cfg.get("checkpoint")
    if checkpoint is None:
        return DEFAULT_DIR / "benchmark.json"
    directory = build_checkpoint_config(cfg).dir
    return (directory if "dir" in checkpoint else DEFAULT_DIR) / "benchmark.json"


def percentile(values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile of ``values`` by linear interpolation (0.5: the median, 0.9: p90)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class BenchmarkRecipeForNextTokenPrediction(BaseRecipe):
    """Measure training steps of a causal LM on one process or many; see the module docstring."""

    def __init__(self, cfg: ConfigNode) -> None:
        self.cfg = cfg

    def setup(self) -> None:
        """Check the config, then build model (with adapters, sharded), data, optimizer, LR schedule and loss,
        and find the peak TFLOP/s."""
        cfg = self.cfg
        check_config(cfg, BENCHMARK, BENCHMARK_REQUIRED, "benchmark", "examples/llm_benchmark")
        self.settings = build_benchmark_settings(cfg)
        self.results_path = json_path(cfg, self.settings)
        self.parallel = parallel = build_parallelism(cfg)
        self.device = parallel.device
        self.batch_sizes = read_batch_sizes(cfg, parallel.dp_size)
        self.total_steps = self.settings.warmup_steps + self.settings.steps
        self.loss_fn = build_loss_fn(cfg, parallel.env.world_size)
        self.peft = build_peft(cfg)
        self.seed = set_seed(int(cfg.get("seed", 42)))
        self._setup_model()
        self._setup_data()
        self.optimizer = parallel.prepare_optimizer(build_optimizer(cfg, self.model))
        self.lr_scheduler = build_lr_scheduler(cfg, self.optimizer, self.total_steps)
        self.max_grad_norm = (cfg.get("clip_grad_norm") or {}).get("max_norm")
        self.dtype = compute_dtype(parallel, self.hf_model)
        self.peak_tflops, self.peak_source = self.settings.peak_tflops, "benchmark.peak_tflops"
        if self.peak_tflops is None:
            self.peak_source = f"measured: {str(self.dtype).removeprefix('torch.')} matmul on {self.device.type}"
            self.peak_tflops = measure_peak_tflops(self.dtype, self.device) if parallel.is_rank0 else None

    def _setup_model(self) -> None:
        """Build ``model:``, add the ``peft:`` adapters, count parameters, then shard or wrap it.

        Under FSDP2 on several processes the model is built on the meta device and gets its
        weights after sharding, as in the finetune recipe (``materialize_model``).
        """
        with defer_weights(shards_before_weights(self.parallel, self.cfg, self.peft, writes_base=False)):
            model = build_model(self.cfg, self.device)
            if self.peft is not None:
                add_adapters(model, self.peft, self.cfg)
        self.lora_shapes = [(m.in_features, m.out_features) for m in lora_modules(model).values()]
        self.model_name = type(model).__name__
        self.parameter_count = sum(p.numel() for p in model.parameters())
        self.trainable_count = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.model = self.parallel.parallelize(model)
        materialize_model(model, self.device)
        self.compiled_blocks = compile_model(self.cfg, self.model)

    def _setup_data(self) -> None:
        """Build the dataset (mock data enough for every step), this rank's dataloader and the step scheduler."""
        parallel = self.parallel
        num_samples = self.batch_sizes["global_batch_size"] * self.total_steps
        self.dataset = build_benchmark_dataset(self.cfg, self.settings, self.hf_model.config.vocab_size, num_samples)
        pad_id = self.hf_model.config.pad_token_id
        self.dataloader = make_dataloader(
            self.dataset,
            batch_size=self.batch_sizes["local_batch_size"],
            collate_fn=functools.partial(default_collater, pad_token_id=pad_id if pad_id is not None else 0),
            shuffle=False,
            seed=self.seed,
            dp_rank=parallel.dp_rank,
            dp_size=parallel.dp_size,
        )
        with errors_named_by(self.cfg, "step_scheduler"):
            self.step_scheduler = StepScheduler(
                self.dataloader, dp_size=parallel.dp_size, max_steps=self.total_steps, **self.batch_sizes
            )

    @property
    def hf_model(self) -> torch.nn.Module:
        """The Hugging Face model being trained (inside a DDP wrapper, if any)."""
        return unwrap_model(self.model)

    def _flops_per_token(self, seq_length: int) -> float:
        """Analytic training FLOPs per token at ``seq_length`` (the LoRA count when adapters are on)."""
        lora = {"lora_rank": self.peft.dim, "lora_shapes": self.lora_shapes} if self.peft is not None else {}
        return training_flops_per_token(self.hf_model.config, seq_length, **lora)

    def run_benchmark(self) -> dict[str, Any]:
        """Run the warm-up and measured steps; on rank 0 print the table and write the JSON. Return the results.

        Every rank returns the same numbers: step times are the slowest rank's, tokens and FLOPs
        are summed over the data-parallel ranks, peak memory is the largest rank's.
        """
        scheduler, warmup = self.step_scheduler, self.settings.warmup_steps
        times: list[float] = []
        tokens, flops, longest = 0, 0.0, 0
        flops_at = functools.cache(self._flops_per_token)
        mark = time.perf_counter()
        for micro_batches in scheduler:
            train_step(
                self.model,
                micro_batches,
                self.loss_fn,
                self.optimizer,
                lr_scheduler=self.lr_scheduler,
                max_grad_norm=self.max_grad_norm,
                device=self.device,
                all_reduce=self.parallel.sum_over_data_parallel(),
                prepare_micro_batch=self.parallel.micro_batch_hook(),
            )
            _synchronize(self.device)
            now = time.perf_counter()
            if scheduler.step > warmup:
                times.append(now - mark)
                for batch in micro_batches:
                    width = batch["input_ids"].shape[1]
                    longest = max(longest, width)
                    tokens += count_real_tokens(batch)
                    flops += count_real_tokens(batch) * flops_at(width)
            mark = now
        results = self._results(times, tokens, flops, longest)
        if self.parallel.is_rank0:
            self.results_path.parent.mkdir(parents=True, exist_ok=True)
            self.results_path.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
            print(format_table(results), flush=True)
            print(f"wrote {self.results_path}", flush=True)
        return results

    def run_train_validation_loop(self) -> None:
        """BaseRecipe's run step: ``run_benchmark()``."""
        self.run_benchmark()

    def _reduced(self, values: list[float], op: Any) -> list[float]:
        """``values`` reduced element-wise over every rank with ``op`` (themselves for one process)."""
        if not (dist.is_available() and dist.is_initialized()):
            return values
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=op)
        return tensor.tolist()

    def _results(self, times: list[float], tokens: int, flops: float, longest: int) -> dict[str, Any]:
        """The JSON-ready results from this rank's measurements, combined over ranks."""
        parallel = self.parallel
        world = parallel.env.world_size
        times = self._reduced(times, dist.ReduceOp.MAX)
        # Ranks that share a batch (TP, CP) count the same tokens: sum over all, divide by their number.
        sharing = world // parallel.dp_size
        tokens, flops = (value / sharing for value in self._reduced([tokens, flops], dist.ReduceOp.SUM))
        # Rank 0 alone measures the peak; the maximum hands its number to every rank.
        memory, peak = self._reduced([peak_memory_gib(self.device), self.peak_tflops or 0.0], dist.ReduceOp.MAX)
        host_per_rank, device_per_rank = self._memory_per_rank()
        elapsed = sum(times)
        tokens_per_s = tokens / elapsed
        tflops_per_s = flops / elapsed / 1e12
        return {
            "model": self.model_name,
            "parameters": self.parameter_count,
            "trainable_parameters": self.trainable_count,
            "peft": None if self.peft is None else {"rank": self.peft.dim, "adapted_modules": len(self.lora_shapes)},
            "world_size": world,
            "layout": parallel.describe(),
            "device": self.device.type,
            "dtype": str(self.dtype).removeprefix("torch."),
            "loss_fn": type(self.loss_fn).__name__,
            "compiled_blocks": self.compiled_blocks,
            "liger_kernel": bool(self.cfg.model.get("use_liger_kernel", False)),
            "seq_length": longest,
            "global_batch_size": self.batch_sizes["global_batch_size"],
            "local_batch_size": self.batch_sizes["local_batch_size"],
            "grad_accumulation_steps": self.step_scheduler.grad_accumulation_steps,
            "tokens_per_step": round(tokens / len(times)),
            "warmup_steps": self.settings.warmup_steps,
            "steps": len(times),
            "step_times_s": times,
            "step_time_median_s": percentile(times, 0.5),
            "step_time_p90_s": percentile(times, 0.9),
            "step_time_mean_s": statistics.fmean(times),
            "tokens_per_s": tokens_per_s,
            "tokens_per_s_per_process": tokens_per_s / world,
            "flops_per_token": flops / tokens,
            "tflops_per_s": tflops_per_s,
            "tflops_per_s_per_process": tflops_per_s / world,
            "peak_tflops_per_process": peak,
            "peak_tflops_source": self.peak_source,
            "mfu": tflops_per_s / world / peak,
            "peak_memory_gib": memory,
            "peak_memory_kind": "CUDA max allocated" if self.device.type == "cuda" else "max RSS of a process",
            "peak_host_memory_gib_per_rank": host_per_rank,
            "peak_device_memory_gib_per_rank": device_per_rank,
        }

    def _memory_per_rank(self) -> tuple[list[float], list[float] | None]:
        """Every rank's peak host memory (max RSS) and peak device memory (CUDA max allocated; None on a CPU), in GiB,
        indexed by rank."""
        on_cuda = self.device.type == "cuda"
        mine = torch.tensor(
            [peak_memory_gib("cpu"), peak_memory_gib(self.device) if on_cuda else 0.0],
            dtype=torch.float64,
            device=self.device,
        )
        ranks = [mine]
        if dist.is_available() and dist.is_initialized():
            ranks = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
            dist.all_gather(ranks, mine)
        host = [float(rank[0]) for rank in ranks]
        return host, [float(rank[1]) for rank in ranks] if on_cuda else None


def speed_options(results: dict[str, Any]) -> str:
    """Return the speed options of a run (loss, torch.compile, Liger) as one line."""
    options = [f"loss {results['loss_fn']}"]
    if results["compiled_blocks"]:
        options.append(f"torch.compile on {results['compiled_blocks']} blocks")
    if results["liger_kernel"]:
        options.append("Liger kernels")
    return ", ".join(options)


def memory_per_rank(results: dict[str, Any]) -> str:
    """Return each rank's peak host (and device) memory as one line: ``rank 0: host 1.21 GiB, device 3.40 GiB; ...``."""
    device = results["peak_device_memory_gib_per_rank"]
    parts = []
    for rank, host in enumerate(results["peak_host_memory_gib_per_rank"]):
        on_device = f", device {device[rank]:.2f} GiB" if device is not None else ""
        parts.append(f"rank {rank}: host {host:.2f} GiB{on_device}")
    return "; ".join(parts)


def format_table(results: dict[str, Any]) -> str:
    """Return ``results`` (from ``run_benchmark``) as a two-column plain-text table."""
    peft = results["peft"]
    rows = [
        ("model", f"{results['model']}, {results['parameters']:,} parameters ({results['dtype']})"),
        ("trainable", f"{results['trainable_parameters']:,}" + (f" (LoRA r={peft['rank']})" if peft else "")),
        ("layout", f"{results['layout']} on {results['device']}"),
        ("speed options", speed_options(results)),
        ("batch", f"{results['global_batch_size']} x {results['seq_length']} tokens per step"),
        ("steps", f"{results['steps']} measured after {results['warmup_steps']} warm-up"),
        ("step time", f"median {results['step_time_median_s']:.4f} s, p90 {results['step_time_p90_s']:.4f} s"),
        ("tokens/s", f"{results['tokens_per_s']:,.0f} total, {results['tokens_per_s_per_process']:,.0f} per process"),
        (
            "TFLOP/s",
            f"{results['tflops_per_s']:.4g} total, {results['tflops_per_s_per_process']:.4g} per process "
            f"({results['flops_per_token']:,.0f} FLOPs per token)",
        ),
        (
            "MFU",
            f"{100 * results['mfu']:.3g}% of {results['peak_tflops_per_process']:.4g} TFLOP/s per process "
            f"({results['peak_tflops_source']})",
        ),
        ("peak memory", f"{results['peak_memory_gib']:.2f} GiB ({results['peak_memory_kind']})"),
        ("peak per rank", memory_per_rank(results)),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [f"{'benchmark'.ljust(width)}  result", f"{'-' * width}  {'-' * 6}"]
    return "\n".join(lines + [f"{name.ljust(width)}  {value}" for name, value in rows])


def main(cfg: ConfigNode | None = None) -> int:
    """Run the benchmark on ``cfg`` (default: the config named by ``-c`` in sys.argv); return the exit status."""
    return run_recipe(BenchmarkRecipeForNextTokenPrediction, cfg)


if __name__ == "__main__":
    sys.exit(main_reporting_user_errors(main))

__all__ = [
    "BenchmarkRecipeForNextTokenPrediction",
    "BenchmarkSettings",
    "build_benchmark_dataset",
    "build_benchmark_settings",
    "compute_dtype",
    "format_table",
    "json_path",
    "main",
    "percentile",
    "read_batch_sizes",
]
