"""examples/llm_finetune/tiny_lora.yaml reaches the default task's bar, and peft loads its adapter, also
through AutoPeftModelForCausalLM from another working directory and after the run folder is moved."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from peft import AutoPeftModelForCausalLM, PeftModel
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "examples" / "data" / "tiny_llama_counting"


def test_lora_example_reaches_the_exact_match_bar_and_its_adapter_loads_after_a_move(tmp_path, monkeypatch):
    automodel = str(Path(sys.executable).parent / "automodel")
    run = tmp_path / "run"
    relative = os.path.relpath(run, ROOT)  # like the example's runs/tiny_lora: relative to where it runs
    result = subprocess.run(
        [automodel, "finetune", "llm", "-c", "examples/llm_finetune/tiny_lora.yaml", "--checkpoint.dir", relative],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (run / "validation.jsonl").read_text().splitlines()]
    assert records[0]["exact_match"] < 0.1 and records[-1]["exact_match"] > 0.9
    assert not (run / "base_model").exists()  # the base is the shipped folder, not a copy
    step = run / "step_000500"
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(BASE), step / "model").eval()
    merged = AutoModelForCausalLM.from_pretrained(step / "merged").eval()
    ids = torch.tensor([[5, 17, 42, 9, 3, 77]])
    with torch.no_grad():
        expected = merged(ids).logits
        assert torch.allclose(adapted(ids).logits, expected, atol=1e-5)

    moved = tmp_path / "elsewhere" / "moved_run"
    moved.parent.mkdir()
    shutil.move(run, moved)
    monkeypatch.chdir(moved.parent)  # another working directory, the run folder gone from where it trained
    auto = AutoPeftModelForCausalLM.from_pretrained(moved / "step_000500" / "model").eval()
    with torch.no_grad():
        assert torch.allclose(auto(ids).logits, expected, atol=1e-5)
