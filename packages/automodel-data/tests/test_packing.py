"""pack_dataset and packed_collater: rows of whole samples, restarted positions, no attention across samples."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from data_test_helpers import write_jsonl
from transformers import LlamaConfig, LlamaForCausalLM

from automodel.data import DataError
from automodel.data.llm import (
    ColumnMappedTextInstructionDataset,
    PretrainTextDataset,
    pack_dataset,
    packed_collater,
)


def _sample(length: int, start: int) -> dict:
    tokens = list(range(start, start + length + 1))
    return {"input_ids": tokens[:-1], "labels": [-100, *tokens[2:]], "prompt_length": 1}


SAMPLES = [_sample(5, 10), _sample(3, 20), _sample(6, 30), _sample(2, 40)]


def test_rows_hold_whole_samples_with_positions_restarting_and_padding_apart() -> None:
    packed = pack_dataset(SAMPLES, packed_sequence_size=8, pad_token_id=99)
    rows = [packed[i] for i in range(len(packed))]
    assert sorted(length for row in rows for length in row["seq_lens"]) == [2, 3, 5, 6]
    for row in rows:
        assert len(row["input_ids"]) == len(row["labels"]) == len(row["position_ids"]) == 8
        expected_positions, pieces = [], []
        for length in row["seq_lens"]:
            sample = next(s for s in SAMPLES if len(s["input_ids"]) == length)
            pieces.append(sample)
            expected_positions += list(range(length))
        used = sum(row["seq_lens"])
        assert row["position_ids"] == expected_positions + list(range(8 - used))
        assert row["input_ids"] == [t for s in pieces for t in s["input_ids"]] + [99] * (8 - used)
        assert row["labels"] == [t for s in pieces for t in s["labels"]] + [-100] * (8 - used)


def test_packing_efficiency_is_real_tokens_over_all_tokens_and_logged(caplog) -> None:
    with caplog.at_level(logging.INFO):
        packed = pack_dataset(SAMPLES, packed_sequence_size=8)
    assert len(packed) == 2  # 6+2 and 5+3: best fit fills both rows
    assert packed.packing_efficiency == pytest.approx(16 / 16)
    assert pack_dataset(SAMPLES, packed_sequence_size=10).packing_efficiency == pytest.approx(16 / 20)
    assert "packed 4 samples into 2 rows of 8 tokens, packing efficiency 100.0%" in caplog.text


def test_packed_collater_stacks_rows_without_an_attention_mask() -> None:
    packed = pack_dataset(SAMPLES, packed_sequence_size=10)
    batch = packed_collater([packed[0], packed[1]])
    assert set(batch) == {"input_ids", "labels", "position_ids", "seq_lens"}
    assert batch["input_ids"].shape == (2, 10) and batch["input_ids"].dtype == torch.long
    real = [sum(packed[i]["seq_lens"]) for i in (0, 1)]
    assert batch["seq_lens"].sum(dim=1).tolist() == real


def test_samples_longer_than_a_row_are_dropped_and_counted(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        packed = pack_dataset(SAMPLES, packed_sequence_size=4)
    assert sorted(length for i in range(len(packed)) for length in packed[i]["seq_lens"]) == [2, 3]
    assert "dropped 2 of 4 samples are longer than packed_sequence_size=4 tokens (longest 6)" in caplog.text


def test_samples_longer_than_a_row_are_a_data_error_when_not_dropped(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "qa.jsonl", [{"q": "What is the capital of France?", "a": "Paris"}])
    dataset = ColumnMappedTextInstructionDataset(path, {"question": "q", "answer": "a"}, tokenizer)
    with pytest.raises(DataError, match=r"qa.jsonl: 1 of 1 samples are longer than packed_sequence_size=4"):
        pack_dataset(dataset, packed_sequence_size=4, drop_long_samples=False)
    with pytest.raises(DataError, match=r"qa.jsonl: every sample is longer than a packed row"):
        pack_dataset(dataset, packed_sequence_size=4)


def test_a_streaming_dataset_cannot_be_packed(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", [{"text": "One two three four five six seven eight nine ten."}])
    streamed = PretrainTextDataset(path, tokenizer, seq_length=4, streaming=True)
    with pytest.raises(DataError, match=r"docs.jsonl: an iterable .* cannot be packed"):
        pack_dataset(streamed, packed_sequence_size=16)


def _token_losses(model: LlamaForCausalLM, input_ids: torch.Tensor, labels: torch.Tensor, **inputs) -> torch.Tensor:
    logits = model(input_ids=input_ids, use_cache=False, **inputs).logits
    return F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="none")


def test_a_packed_batch_gives_each_sample_the_losses_it_has_alone(tokenizer, tmp_path: Path) -> None:
    rows = [
        {"q": "What is the capital of France?", "a": "Paris"},
        {"q": "What comes after two?", "a": "three"},
        {"q": "What is the weather like today?", "a": "It is sunny and warm."},
        {"q": "Hello!", "a": "How can I help you?"},
        {"q": "Count.", "a": "One two three four five six seven eight nine ten eleven twelve."},
    ]
    dataset = ColumnMappedTextInstructionDataset(
        write_jsonl(tmp_path / "qa.jsonl", rows), {"question": "q", "answer": "a"}, tokenizer
    )
    packed = pack_dataset(dataset, packed_sequence_size=64, pad_token_id=tokenizer.pad_token_id)
    assert any(len(packed[i]["seq_lens"]) > 1 for i in range(len(packed)))
    batch = packed_collater([packed[i] for i in range(len(packed))])

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        attn_implementation="sdpa",
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float32).eval()
    assert model.config._attn_implementation == "sdpa"
    originals = [dataset[i]["input_ids"] for i in range(len(dataset))]
    compared, leaked = 0, 0
    with torch.no_grad():
        packed_losses = _token_losses(model, batch["input_ids"], batch["labels"], position_ids=batch["position_ids"])
        unpacked_losses = _token_losses(model, batch["input_ids"], batch["labels"])  # one causal sequence per row
        for row in range(len(packed)):
            start = 0
            for length in packed[row]["seq_lens"]:
                ids, labels = (
                    batch["input_ids"][row : row + 1, start : start + length],
                    batch["labels"][row : row + 1, start : start + length],
                )
                assert ids[0].tolist() in originals
                alone = _token_losses(model, ids, labels)[0]
                torch.testing.assert_close(packed_losses[row, start : start + length], alone, atol=1e-5, rtol=0)
                compared += 1
                if start > 0 and not torch.allclose(unpacked_losses[row, start : start + length], alone, atol=1e-5):
                    leaked += 1
                start += length
    assert compared == len(dataset)
    assert leaked > 0  # the check has teeth: without restarted positions, later samples see earlier ones
