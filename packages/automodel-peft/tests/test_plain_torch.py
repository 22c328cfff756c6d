"""The core on a plain torch.nn.Sequential: no transformers model anywhere, peft included as the reference."""

from __future__ import annotations

import json
from pathlib import Path

import peft
import pytest
import torch
from peft_test_helpers import logits, perturb_adapters, sequential_loss, tiny_sequential, token_ids, train

from automodel.peft import (
    LoRAConfig,
    apply_lora,
    load_adapter,
    lora_modules,
    merge_lora,
    remove_lora,
    save_adapter,
    trainable_parameter_count,
    unmerge_lora,
)


@pytest.mark.parametrize("use_dora", [False, True], ids=["lora", "dora"])
def test_lora_on_a_sequential_trains_merges_saves_and_loads(use_dora: bool, tmp_path: Path) -> None:
    model = apply_lora(tiny_sequential(), LoRAConfig(r=2, alpha=4, target_modules=["0"], use_dora=use_dora))
    assert list(lora_modules(model)) == ["1.0", "2.0"]
    assert trainable_parameter_count(model) == 2 * (2 * 16 + 32 * 2 + (32 if use_dora else 0))
    ids = token_ids(length=12)
    losses = train(model, lambda: sequential_loss(model, ids), steps=8, lr=3e-2)
    assert losses[-1] < losses[0]
    adapted = logits(model, ids)
    torch.testing.assert_close(logits(merge_lora(model), ids), adapted, atol=1e-5, rtol=1e-5)
    unmerge_lora(model)
    save_adapter(model, tmp_path, task_type=None)
    torch.testing.assert_close(logits(load_adapter(tiny_sequential(), tmp_path), ids), adapted)
    torch.testing.assert_close(logits(remove_lora(merge_lora(model)), ids), adapted, atol=1e-5, rtol=1e-5)


def test_peft_loads_a_sequential_adapter_whose_short_names_alone_would_select_too_much(tmp_path: Path) -> None:
    model = apply_lora(tiny_sequential(), LoRAConfig(r=2, target_modules=["re:1\\.0", "2.2"]))
    perturb_adapters(model)
    save_adapter(model, tmp_path, task_type=None)
    config = json.loads((tmp_path / "adapter_config.json").read_text())
    # `0` would also select the embedding at path `0`, which peft cannot exclude without excluding `1.0`
    assert config["target_modules"] == "1\\.0|2\\.2"
    loaded = peft.PeftModel.from_pretrained(tiny_sequential(), tmp_path)
    ids = token_ids()
    torch.testing.assert_close(logits(loaded, ids), logits(model, ids), atol=1e-5, rtol=1e-5)
