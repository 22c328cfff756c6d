"""benchmark: the JSON and table of a run, the LoRA FLOPs against torch's count, two processes, bad input."""

from __future__ import annotations

import json

import pytest
import torch
from benchmark_test_helpers import benchmark_config, run_benchmark
from torch.utils.flop_counter import FlopCounterMode

from automodel.config import ConfigError
from automodel.distributed.testing import run_on_ranks
from automodel.models import AutoModelForCausalLM, tiny_llama_config, training_flops_per_token
from automodel.peft import LoRAConfig, apply_lora, lora_modules
from automodel.recipes.llm.benchmark import BenchmarkRecipeForNextTokenPrediction

FIELDS = {
    "model",
    "parameters",
    "trainable_parameters",
    "peft",
    "world_size",
    "layout",
    "device",
    "dtype",
    "loss_fn",
    "compiled_blocks",
    "liger_kernel",
    "seq_length",
    "global_batch_size",
    "local_batch_size",
    "grad_accumulation_steps",
    "tokens_per_step",
    "warmup_steps",
    "steps",
    "step_times_s",
    "step_time_median_s",
    "step_time_p90_s",
    "step_time_mean_s",
    "tokens_per_s",
    "tokens_per_s_per_process",
    "flops_per_token",
    "tflops_per_s",
    "tflops_per_s_per_process",
    "peak_tflops_per_process",
    "peak_tflops_source",
    "mfu",
    "peak_memory_gib",
    "peak_memory_kind",
    "peak_host_memory_gib_per_rank",
    "peak_device_memory_gib_per_rank",
}
LORA = {"_target_": "automodel.peft.LoRAConfig", "dim": 4, "alpha": 8, "match_all_linear": True}


def _run(cfg):
    recipe = BenchmarkRecipeForNextTokenPrediction(cfg)
    recipe.setup()
    return recipe, recipe.run_benchmark()


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    out = tmp_path_factory.mktemp("benchmark")
    recipe, results = _run(benchmark_config(out, step_scheduler={"global_batch_size": 4, "local_batch_size": 2}))
    return out, recipe, results


def test_the_json_holds_every_field_with_sane_values(measured):
    out, recipe, results = measured
    written = json.loads((out / "benchmark.json").read_text())
    assert written == results and set(written) == FIELDS
    assert [p.name for p in out.iterdir()] == ["benchmark.json"]  # no checkpoint
    assert written["steps"] == 3 and len(written["step_times_s"]) == 3 and min(written["step_times_s"]) > 0
    assert written["step_time_median_s"] <= written["step_time_p90_s"] <= max(written["step_times_s"])
    assert written["grad_accumulation_steps"] == 2 and written["tokens_per_step"] == 4 * 32
    assert written["tokens_per_s"] == pytest.approx(3 * 4 * 32 / sum(written["step_times_s"]))
    assert written["tokens_per_s"] == written["tokens_per_s_per_process"] > 0
    assert written["flops_per_token"] == training_flops_per_token(recipe.hf_model.config, 32)
    assert written["tflops_per_s"] == pytest.approx(written["tokens_per_s"] * written["flops_per_token"] / 1e12)
    assert written["peak_tflops_source"] == "measured: float32 matmul on cpu"
    assert 0 < written["mfu"] < 1
    assert written["mfu"] == pytest.approx(written["tflops_per_s"] / written["peak_tflops_per_process"])
    assert 0 < written["peak_memory_gib"] < 64
    assert written["peak_host_memory_gib_per_rank"] == [written["peak_memory_gib"]]
    assert written["peak_device_memory_gib_per_rank"] is None
    assert written["peft"] is None and written["parameters"] == written["trainable_parameters"]
    assert (written["loss_fn"], written["compiled_blocks"], written["liger_kernel"]) == ("MaskedCrossEntropy", 0, False)


def test_run_prints_one_table_and_writes_to_runs_benchmark_without_a_checkpoint_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    benchmark = {"steps": 1, "seq_length": 16, "peak_tflops": 2.5}
    _run(benchmark_config(tmp_path, checkpoint=None, benchmark=benchmark))
    printed = capsys.readouterr().out
    for row in ("step time", "tokens/s", "TFLOP/s", "MFU", "peak memory", "peak per rank  rank 0: host"):
        assert row in printed
    assert "TFLOP/s per process (benchmark.peak_tflops)" in printed
    assert "wrote runs/benchmark/benchmark.json" in printed
    assert json.loads((tmp_path / "runs" / "benchmark" / "benchmark.json").read_text())["steps"] == 1


def test_a_given_peak_and_json_path_are_used(tmp_path):
    path = tmp_path / "elsewhere" / "speed.json"
    cfg = benchmark_config(
        tmp_path, benchmark={"steps": 2, "seq_length": 16, "peak_tflops": 2.5, "json_path": str(path)}
    )
    _, results = _run(cfg)
    assert json.loads(path.read_text())["peak_tflops_per_process"] == 2.5
    assert results["mfu"] == pytest.approx(results["tflops_per_s"] / 2.5)


def test_lora_uses_the_lora_flops(tmp_path):
    recipe, results = _run(benchmark_config(tmp_path, peft=LORA, benchmark={"steps": 2, "seq_length": 32}))
    shapes = [(m.in_features, m.out_features) for m in lora_modules(recipe.hf_model).values()]
    assert len(shapes) == 14  # 7 Linear layers in each of 2 blocks
    expected = training_flops_per_token(recipe.hf_model.config, 32, lora_rank=4, lora_shapes=shapes)
    assert results["flops_per_token"] == expected < training_flops_per_token(recipe.hf_model.config, 32)
    assert results["peft"] == {"rank": 4, "adapted_modules": 14}
    assert 0 < results["trainable_parameters"] < results["parameters"]


def test_a_dataset_section_sets_the_length(tmp_path):
    dataset = {"_target_": "automodel.data.llm.MockDataset", "vocab_size": 320, "seq_length": 24, "num_samples": 16}
    _, results = _run(benchmark_config(tmp_path, dataset=dataset, benchmark={"steps": 2, "peak_tflops": 1.0}))
    assert results["seq_length"] == 24 and results["tokens_per_step"] == 4 * 24


def _counted_matmuls(model: torch.nn.Module, ids: torch.Tensor) -> tuple[int, int]:
    """(Linear matmul FLOPs, SDPA forward FLOPs) that FlopCounterMode counts in one forward and backward."""
    with FlopCounterMode(display=False) as counter:
        model(input_ids=ids).logits.float().sum().backward()
    counts = {str(op).removeprefix("aten."): n for op, n in counter.get_flop_counts()["Global"].items()}
    sdpa = counts.pop("_scaled_dot_product_flash_attention_for_cpu")
    counts.pop("_scaled_dot_product_flash_attention_for_cpu_backward")
    assert set(counts) <= {"mm", "addmm", "bmm"}, counts
    return sum(counts.values()), sdpa


@pytest.mark.parametrize(
    "lora",
    [LoRAConfig(dim=8, match_all_linear=True), LoRAConfig(dim=4, target_modules=["q_proj", "v_proj"])],
    ids=["all-linear-r8", "q-v-r4"],
)
def test_the_lora_formula_matches_the_matmuls_torch_counts(lora):
    fields = tiny_llama_config(tie_word_embeddings=False)
    model = AutoModelForCausalLM.from_config(fields, seed=0)
    apply_lora(model, lora)
    adapters = lora_modules(model)
    batch, seq = 2, 32
    matmuls, sdpa_forward = _counted_matmuls(model, torch.randint(0, 512, (batch, seq)))
    formula = training_flops_per_token(
        model.config, seq, lora_rank=lora.dim, lora_shapes=[(m.in_features, m.out_features) for m in adapters.values()]
    )
    attention = 12 * 2 * 4 * 16 * seq / 2
    # SDPA on CPU is counted without the causal saving; the model needs 3x its forward, halved.
    assert attention == 3 * sdpa_forward / (batch * seq) / 2
    # Autograd skips what the convention counts for the first layer's q, k, v, whose input (the
    # frozen embeddings) needs no gradient: the base weights' input gradient and each adapter A's.
    first = model.model.layers[0].self_attn
    skipped = sum(
        2 * proj.in_features * proj.out_features + (2 * lora.dim * proj.in_features if proj in adapters.values() else 0)
        for proj in (first.q_proj, first.k_proj, first.v_proj)
    )
    assert formula - attention - skipped == matmuls / (batch * seq)


@pytest.mark.parametrize(
    ("distributed", "dp_size"), [({"strategy": "fsdp2"}, 2), ({"tp_size": 2}, 1)], ids=["fsdp2", "tp2"]
)
def test_two_processes_report_the_global_batch_once(tmp_path, distributed, dp_size):
    steps = {"global_batch_size": 4, "local_batch_size": 2 if dp_size == 2 else 4}
    benchmark = {"warmup_steps": 1, "steps": 2, "seq_length": 32, "peak_tflops": 2.5}
    sections = {"distributed": distributed, "step_scheduler": steps, "benchmark": benchmark}
    # Python 3.11's fork server does not see the tests folder on sys.path, so the recipe module is
    # named too: importing it once in the server saves every rank importing transformers.
    preload = ["automodel.recipes.llm.benchmark", "benchmark_test_helpers"]
    ranks = run_on_ranks(run_benchmark, 2, args=(str(tmp_path), sections), preload=preload, timeout_s=300)
    assert ranks[0] == ranks[1]
    results = json.loads((tmp_path / "benchmark.json").read_text())
    assert results == ranks[0]
    assert results["world_size"] == 2 and results["tokens_per_step"] == 4 * 32
    assert results["tokens_per_s"] == pytest.approx(2 * results["tokens_per_s_per_process"])
    assert results["mfu"] == pytest.approx(results["tflops_per_s"] / 2 / 2.5)
    hosts = results["peak_host_memory_gib_per_rank"]
    assert len(hosts) == 2 and max(hosts) == results["peak_memory_gib"] and min(hosts) > 0


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"benchmark": {"steps": 0, "seq_length": 16}}, r"`benchmark.steps`: must be a positive integer .*not 0"),
        ({"benchmark": {"step": 3, "seq_length": 16}}, r"`benchmark.step`: is not a benchmark setting; did you mean"),
        ({"benchmark": {"steps": 3}}, r"`benchmark`: has no `seq_length`"),
        (
            {
                "dataset": {
                    "_target_": "automodel.data.llm.MockDataset",
                    "vocab_size": 8,
                    "seq_length": 4,
                    "num_samples": 8,
                }
            },
            r"`benchmark.seq_length`: sets the length of the default mock data.*remove one of them",
        ),
        (
            {"step_scheduler": {"global_batch_size": 4, "max_steps": 100}},
            r"`step_scheduler.max_steps`: is not read by the benchmark",
        ),
        ({"validation_dataset": {}}, r"`validation_dataset`: is not a section benchmark knows"),
        ({"checkpoint": {"dri": "x"}}, r"`checkpoint.dri`: is not a checkpoint setting; did you mean `dir`"),
        ({"step_scheduler": {"global_batch_size": 6, "local_batch_size": 4}}, r"`step_scheduler`: .*not a multiple"),
    ],
    ids=["steps", "unknown-key", "no-length", "length-twice", "max-steps", "section", "checkpoint", "batch-arithmetic"],
)
def test_bad_input_is_a_config_error_naming_the_key(tmp_path, sections, message):
    with pytest.raises(ConfigError, match=message):
        BenchmarkRecipeForNextTokenPrediction(benchmark_config(tmp_path, **sections)).setup()
