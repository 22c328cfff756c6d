"""Test helpers: a small ChatML tokenizer trained on a few sentences, and data files on disk."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

SPECIAL_TOKENS = ["<|endoftext|>", "<|pad|>", "<|im_start|>", "<|im_end|>"]

CHATML_TEMPLATE = (
    "{% if tools %}{{ '<|im_start|>tools\\n' }}"
    "{% for tool in tools %}{{ tool['function']['name'] + '\\n' }}{% endfor %}"
    "{{ '<|im_end|>\\n' }}{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{% if message['content'] %}{{ message['content'] }}{% endif %}"
    "{% for call in message.get('tool_calls', []) %}"
    "{{ '<tool_call>' + call['function']['name'] + ' ' + call['function']['arguments'] + '</tool_call>' }}"
    "{% endfor %}"
    "{{ '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

SENTENCES = [
    "The capital of France is Paris.",
    "Context: Question: Answer: the quick brown fox jumps over the lazy dog.",
    "What is the weather like today? It is sunny and warm.",
    "You are a helpful assistant. Hello! How can I help you?",
    "Tool calls: get_weather with arguments city Paris; the result is 21 degrees.",
    "Pretraining text is cut into blocks of tokens, each document ends with a special token.",
    "One two three four five six seven eight nine ten eleven twelve.",
]


def build_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with ChatML special tokens and chat template, trained in well under a second."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer.train_from_iterator(SENTENCES * 4, trainer)
    wrapped = PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|endoftext|>", pad_token="<|pad|>")
    wrapped.chat_template = CHATML_TEMPLATE
    return wrapped


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSON lines and return the path."""
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def label_runs(labels: list[int]) -> list[list[int]]:
    """The maximal runs of consecutive labels that are not -100."""
    runs: list[list[int]] = []
    previous_masked = True
    for label in labels:
        if label == -100:
            previous_masked = True
            continue
        if previous_masked:
            runs.append([])
        runs[-1].append(label)
        previous_masked = False
    return runs
