"""PretrainTextDataset: EOS-ended documents cut into blocks, in memory or streamed and sharded."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from data_test_helpers import SENTENCES, write_jsonl
from torch.utils.data import Dataset, IterableDataset

from automodel.data import DataError
from automodel.data.llm import PretrainTextDataset, StreamingPretrainTextDataset

SEQ = 16


@pytest.fixture
def text_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "docs.jsonl", [{"text": s, "id": i} for i, s in enumerate(SENTENCES)])


def _stream_of(tokenizer, documents: list[str]) -> list[int]:
    return [t for d in documents for t in [*tokenizer(d)["input_ids"], tokenizer.eos_token_id]]


def test_blocks_cover_the_eos_ended_token_stream_with_every_pair_a_target_once(tokenizer, text_file: Path) -> None:
    dataset = PretrainTextDataset(text_file, tokenizer, seq_length=SEQ)
    stream = _stream_of(tokenizer, SENTENCES)
    assert isinstance(dataset, Dataset) and not isinstance(dataset, IterableDataset)
    assert len(dataset) == (len(stream) - 1) // SEQ
    pairs = [(i, t) for item in dataset for i, t in zip(item["input_ids"], item["labels"], strict=True)]
    assert pairs == list(itertools.pairwise(stream))[: len(dataset) * SEQ]
    assert all(len(item["input_ids"]) == len(item["labels"]) == SEQ for item in dataset)


def test_limit_dataset_samples_reads_only_the_first_documents(tokenizer, text_file: Path) -> None:
    dataset = PretrainTextDataset(text_file, tokenizer, seq_length=4, limit_dataset_samples=2)
    assert len(dataset) == (len(_stream_of(tokenizer, SENTENCES[:2])) - 1) // 4


def test_streaming_gives_an_iterable_dataset_with_the_same_blocks(tokenizer, text_file: Path) -> None:
    streamed = PretrainTextDataset(text_file, tokenizer, seq_length=SEQ, streaming=True)
    assert isinstance(streamed, StreamingPretrainTextDataset) and isinstance(streamed, IterableDataset)
    assert list(streamed) == list(PretrainTextDataset(text_file, tokenizer, seq_length=SEQ))


def test_streaming_shards_give_each_rank_its_own_documents(tokenizer, text_file: Path, tmp_path: Path) -> None:
    for rank in (0, 1):
        streamed = StreamingPretrainTextDataset(text_file, tokenizer, seq_length=4)
        streamed.set_shard(rank, 2)
        own = write_jsonl(tmp_path / f"rank{rank}.jsonl", [{"text": s} for s in SENTENCES[rank::2]])
        assert list(streamed) == list(PretrainTextDataset(own, tokenizer, seq_length=4))


def test_too_little_text_for_one_block_is_a_data_error(tokenizer, text_file: Path) -> None:
    with pytest.raises(DataError, match=r"docs.jsonl: holds \d+ tokens, fewer than one block.*lower seq_length"):
        PretrainTextDataset(text_file, tokenizer, seq_length=100_000)
    streamed = StreamingPretrainTextDataset(text_file, tokenizer, seq_length=100_000)
    with pytest.raises(DataError, match=r"shard 0 of 1 .* less than one block"):
        list(streamed)


def test_a_missing_text_column_is_a_data_error_in_both_modes(tokenizer, text_file: Path) -> None:
    for streaming in (False, True):
        with pytest.raises(DataError, match=r"text_column names column 'body'.*its columns are text, id"):
            PretrainTextDataset(text_file, tokenizer, seq_length=SEQ, text_column="body", streaming=streaming)


def test_a_non_text_column_and_a_bad_shard_are_data_errors(tokenizer, text_file: Path) -> None:
    with pytest.raises(DataError, match=r"column 'id' holds int 0, not text"):
        PretrainTextDataset(text_file, tokenizer, seq_length=SEQ, text_column="id")
    with pytest.raises(DataError, match="shard 2 of 2 does not exist"):
        StreamingPretrainTextDataset(text_file, tokenizer, seq_length=SEQ).set_shard(2, 2)
