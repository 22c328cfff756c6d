"""The README's default job: the tiny SFT run learns, and its model works in plain transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "tiny_sft_losses.json"


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tiny_sft")
    automodel = str(Path(sys.executable).parent / "automodel")
    result = subprocess.run(
        [automodel, "finetune", "llm", "-c", "examples/llm_finetune/tiny_sft.yaml", "--checkpoint.dir", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_held_out_exact_match_goes_from_near_zero_to_above_ninety_percent(run):
    out, _ = run
    records = _jsonl(out / "validation.jsonl")
    assert records[0]["step"] == 0 and records[0]["exact_match"] < 0.1
    assert records[-1]["exact_match"] > 0.9
    assert records[-1]["val_loss"] < 0.1 * records[0]["val_loss"]


def test_the_run_says_where_the_model_went_and_how_to_load_it(run):
    out, result = run
    assert f"model saved to {out}/step_000400/model" in result.stderr
    assert "AutoModelForCausalLM.from_pretrained" in result.stderr


def test_transformers_alone_generates_the_answers_automodel_evaluated(run):
    out, _ = run
    model_dir = out / "step_000400" / "model"
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    evaluated = _jsonl(out / "generations.jsonl")[-1]["predictions"]
    for record in evaluated:
        ids = torch.tensor([tokenizer(record["prompt"])["input_ids"]])
        output = model.generate(ids, max_new_tokens=16, do_sample=False)
        assert tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True).strip() == record["prediction"]


def test_training_losses_match_the_golden_run(run):
    out, _ = run
    losses = {r["step"]: r["loss"] for r in _jsonl(out / "training.jsonl")}
    golden = json.loads(GOLDEN.read_text())
    for step, loss in golden.items():
        assert losses[int(step)] == pytest.approx(loss, abs=1e-4), step


def test_automodel_generate_answers_held_out_questions_from_the_saved_step(run):
    out, _ = run
    rows = _jsonl(ROOT / "examples" / "data" / "number_words" / "validation.jsonl")[:3]
    automodel = str(Path(sys.executable).parent / "automodel")
    command = [automodel, "generate", "llm", "-c", "examples/llm_finetune/tiny_sft.yaml", "--checkpoint.dir", str(out)]
    result = subprocess.run(
        [*command, "--prompt", json.dumps([row["question"] for row in rows])], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [line for r in rows for line in (r["question"], f"  -> {r['answer']}")]
    missing = subprocess.run([*command, "--step", "7", "--prompt", "hi"], capture_output=True, text=True, cwd=ROOT)
    assert missing.returncode == 2 and "step" in missing.stderr and "Traceback" not in missing.stderr


def test_the_run_leaves_its_loss_curves_in_its_folder(run, tmp_path):
    from PIL import Image

    out, result = run
    assert f"loss curves written to {out}/loss_curves.png" in result.stderr
    with Image.open(out / "loss_curves.png") as png:
        assert png.format == "PNG" and png.size[0] == 1500
    automodel = str(Path(sys.executable).parent / "automodel")
    plotted = subprocess.run([automodel, "plot", str(out), "-o", str(tmp_path / "again.png")], capture_output=True)
    assert plotted.returncode == 0 and (tmp_path / "again.png").read_bytes() == (out / "loss_curves.png").read_bytes()
