"""examples/llm_finetune/tiny_lora.yaml reaches the default task's bar, and peft loads its adapter,
also through AutoPeftModelForCausalLM from another working directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from peft import AutoPeftModelForCausalLM, PeftModel
from transformers import AutoModelForCausalLM

ROOT = Path(__file__).resolve().parent.parent


def test_lora_example_reaches_the_exact_match_bar_and_its_outputs_load(tmp_path, monkeypatch):
    automodel = str(Path(sys.executable).parent / "automodel")
    relative = os.path.relpath(tmp_path, ROOT)  # like the example's runs/tiny_lora: relative to where it runs
    result = subprocess.run(
        [automodel, "finetune", "llm", "-c", "examples/llm_finetune/tiny_lora.yaml", "--checkpoint.dir", relative],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "validation.jsonl").read_text().splitlines()]
    assert records[0]["exact_match"] < 0.1 and records[-1]["exact_match"] > 0.9
    step = tmp_path / "step_000500"
    base = AutoModelForCausalLM.from_pretrained(tmp_path / "base_model")
    adapted = PeftModel.from_pretrained(base, step / "model").eval()
    merged = AutoModelForCausalLM.from_pretrained(step / "merged").eval()
    ids = torch.tensor([[5, 17, 42, 9, 3, 77]])
    with torch.no_grad():
        assert torch.allclose(adapted(ids).logits, merged(ids).logits, atol=1e-5)
    monkeypatch.chdir(tmp_path / "step_000500")  # any other working directory
    auto = AutoPeftModelForCausalLM.from_pretrained(step / "model").eval()
    with torch.no_grad():
        assert torch.allclose(auto(ids).logits, merged(ids).logits, atol=1e-5)
