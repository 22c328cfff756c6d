"""Our consolidated model folder is what transformers loads, and transformers' folders are what we load."""

from __future__ import annotations

import pytest
import torch
from checkpoint_test_helpers import tiny_llama
from transformers import AutoModelForCausalLM

from automodel.checkpoint import Checkpointer, load_hf_weights_into

TOKENS = torch.tensor([[1, 5, 9, 14, 3, 77, 21, 8], [2, 60, 4, 4, 31, 90, 12, 7]])


@pytest.mark.parametrize(("max_shard_size", "tie_word_embeddings"), [("5GB", False), ("20KB", True)])
def test_from_pretrained_loads_a_checkpoints_model_folder_with_the_same_logits(
    tmp_path, max_shard_size, tie_word_embeddings
) -> None:
    model = tiny_llama(tie_word_embeddings=tie_word_embeddings)
    optimizer = torch.optim.AdamW(model.parameters())
    checkpointer = Checkpointer(tmp_path, max_shard_size=max_shard_size)
    step_dir = checkpointer.save(
        5, model=model, optimizer=optimizer, write_model_files=lambda folder: model.config.save_pretrained(folder)
    )
    sharded = (step_dir / "model" / "model.safetensors.index.json").exists()
    assert sharded == (max_shard_size == "20KB")

    reloaded = AutoModelForCausalLM.from_pretrained(step_dir / "model").eval()
    with torch.no_grad():
        expected, actual = model(TOKENS).logits, reloaded(TOKENS).logits
    torch.testing.assert_close(actual, expected, atol=1e-6, rtol=0)
    if tie_word_embeddings:
        assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()


def test_a_save_pretrained_folder_loads_into_a_module(tmp_path) -> None:
    source = tiny_llama(tie_word_embeddings=True, seed=0)
    source.save_pretrained(tmp_path, max_shard_size="20KB")
    target = tiny_llama(tie_word_embeddings=True, seed=1)
    assert load_hf_weights_into(target, tmp_path) == ([], [])
    with torch.no_grad():
        torch.testing.assert_close(target(TOKENS).logits, source(TOKENS).logits, atol=0, rtol=0)
