"""Tiny real models, tokenizers and batches for automodel-training's tests."""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

VOCAB = 64


def tiny_llama(seed: int = 0, vocab_size: int = VOCAB) -> LlamaForCausalLM:
    """Return a 2-layer Llama with hidden size 32 in fp32 using SDPA attention."""
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        tie_word_embeddings=False,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    config._attn_implementation = "sdpa"
    return LlamaForCausalLM(config).float()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """Return a whitespace word-level tokenizer: <pad>=0, <s>=1, </s>=2, then letters, digits and words."""
    words = ["<pad>", "<s>", "</s>", "<unk>", *"abcdefghijklmnopqrstuvwxyz", *"0123456789", "plus", "is", "one", "two"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def random_batch(lengths: list[int], vocab: int = VOCAB, seed: int = 0, prompt: int = 2) -> dict:
    """Right-padded batch with pre-shifted labels: the first ``prompt`` positions of each row are masked."""
    gen = torch.Generator().manual_seed(seed)
    width = max(lengths)
    input_ids = torch.zeros(len(lengths), width, dtype=torch.long)
    labels = torch.full((len(lengths), width), -100, dtype=torch.long)
    attention_mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        tokens = torch.randint(4, vocab, (n + 1,), generator=gen)
        input_ids[row, :n] = tokens[:-1]
        labels[row, prompt:n] = tokens[1 + prompt :]
        attention_mask[row, :n] = 1
    position_ids = torch.arange(width).expand(len(lengths), width).clone()
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention_mask, "position_ids": position_ids}


def split_rows(batch: dict, size: int) -> list[dict]:
    """Split a batch into micro-batches of ``size`` rows, trimming each to its longest row."""
    parts = []
    for start in range(0, batch["input_ids"].shape[0], size):
        part = {k: v[start : start + size] for k, v in batch.items()}
        width = int(part["attention_mask"].sum(1).max())
        parts.append({k: v[:, :width] for k, v in part.items()})
    return parts
