"""Every shipped YAML validates: its _target_s import and accept their keywords (litgpt's config-hub test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from automodel.config import find_problems, load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))


def test_there_are_examples_for_finetuning_pretraining_vlms_and_retrieval():
    names = {p.name for p in EXAMPLES}
    assert {"tiny_sft.yaml", "tiny_pretrain.yaml", "llama3_2_1b_squad.yaml", "qwen2_5_0_5b_chat_sft.yaml"} <= names
    assert {
        "tiny_vlm.yaml",
        "tiny_vlm_lora.yaml",
        "qwen2_5_vl_3b_cord_v2.yaml",
        "qwen2_5_vl_3b_cord_v2_lora.yaml",
    } <= names
    assert "gemma3_4b_cord_v2.yaml" in names
    assert {
        "tiny_biencoder.yaml",
        "tiny_crossencoder.yaml",
        "tiny_mine.yaml",
        "qwen3_0_6b_msmarco.yaml",
        "bge_reranker_msmarco.yaml",
    } <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_validates(path):
    assert find_problems(load_config(path)) == []


def test_automodel_config_validate_accepts_the_default_job():
    automodel = str(Path(sys.executable).parent / "automodel")
    result = subprocess.run(
        [automodel, "config", "validate", "-c", "examples/llm_finetune/tiny_sft.yaml"],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
