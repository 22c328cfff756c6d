"""build_dataloader: ranks see disjoint parts, epochs reshuffle, and a saved state resumes mid-epoch exactly."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from data_test_helpers import SENTENCES, write_jsonl
from torchdata.stateful_dataloader import StatefulDataLoader

from automodel.data import DataError, build_dataloader, fast_forward, set_epoch
from automodel.data.llm import MockDataset, PretrainTextDataset, StreamingPretrainTextDataset, default_collater

INDEXED = [{"input_ids": [i], "labels": [i]} for i in range(40)]


def _ids(loader: StatefulDataLoader) -> list[list[int]]:
    return [batch["input_ids"][:, 0].tolist() for batch in loader]


def test_a_restored_state_yields_exactly_the_batches_that_came_next() -> None:
    dataset = MockDataset(vocab_size=100, seq_length=8, num_samples=40)
    first = build_dataloader(dataset, batch_size=4, collate_fn=default_collater, seed=7)
    batches = iter(first)
    for _ in range(3):
        next(batches)
    state = first.state_dict()
    rest = list(batches)
    resumed = build_dataloader(dataset, batch_size=4, collate_fn=default_collater, seed=7)
    resumed.load_state_dict(state)
    again = list(resumed)
    assert len(again) == len(rest) == 10 - 3
    for expected, got in zip(rest, again, strict=True):
        assert torch.equal(expected["input_ids"], got["input_ids"])
        assert torch.equal(expected["labels"], got["labels"])


def test_the_state_carries_the_epoch_so_a_resume_keeps_that_epochs_order() -> None:
    first = build_dataloader(INDEXED, batch_size=4, collate_fn=default_collater)
    epoch_zero = _ids(first)
    set_epoch(first, 1)
    batches = iter(first)
    head = [next(batches)["input_ids"][:, 0].tolist() for _ in range(3)]
    state = first.state_dict()
    rest = [batch["input_ids"][:, 0].tolist() for batch in batches]
    assert head + rest != epoch_zero  # a new epoch, a new order
    resumed = build_dataloader(INDEXED, batch_size=4, collate_fn=default_collater)
    resumed.load_state_dict(state)
    assert _ids(resumed) == rest


def test_data_parallel_ranks_read_disjoint_parts_that_cover_the_dataset() -> None:
    seen = []
    for rank in range(2):
        loader = build_dataloader(INDEXED, batch_size=5, collate_fn=default_collater, dp_rank=rank, dp_size=2)
        seen.append({i for batch in _ids(loader) for i in batch})
    assert seen[0].isdisjoint(seen[1])
    assert seen[0] | seen[1] == set(range(40))


@pytest.mark.parametrize(("saved_dp", "resumed_dp"), [(2, 1), (1, 2), (4, 2)])
def test_fast_forward_continues_an_epoch_saved_under_another_data_parallel_size(saved_dp, resumed_dp) -> None:
    # Steps of 8 samples: the first three steps read the epoch's first 24 samples under any split.
    reference = build_dataloader(INDEXED, batch_size=8, collate_fn=default_collater, seed=5)
    set_epoch(reference, 2)
    epoch_order = [i for batch in _ids(reference) for i in batch]
    read_before = set()
    for rank in range(saved_dp):
        loader = build_dataloader(
            INDEXED, batch_size=8 // saved_dp, collate_fn=default_collater, seed=5, dp_rank=rank, dp_size=saved_dp
        )
        set_epoch(loader, 2)
        read_before |= {i for batch in _ids(loader)[:3] for i in batch}
    assert read_before == set(epoch_order[:24])
    read_after = []
    for rank in range(resumed_dp):
        loader = build_dataloader(
            INDEXED, batch_size=8 // resumed_dp, collate_fn=default_collater, seed=5, dp_rank=rank, dp_size=resumed_dp
        )
        fast_forward(loader, epoch=2, samples_into_epoch=24)
        read_after.append([i for batch in _ids(loader) for i in batch])
    assert sorted(i for ids in read_after for i in ids) == sorted(epoch_order[24:])


def test_fast_forward_refuses_a_position_that_does_not_split_over_the_ranks(tokenizer, tmp_path: Path) -> None:
    loader = build_dataloader(INDEXED, batch_size=2, collate_fn=default_collater, dp_rank=0, dp_size=2)
    with pytest.raises(DataError, match="evenly over 2 data-parallel ranks"):
        fast_forward(loader, epoch=0, samples_into_epoch=3)
    path = tmp_path / "corpus.jsonl"
    write_jsonl(path, [{"text": s} for s in SENTENCES])
    streaming = build_dataloader(
        StreamingPretrainTextDataset(str(path), tokenizer, seq_length=8), batch_size=2, collate_fn=default_collater
    )
    with pytest.raises(DataError, match="streaming dataset cannot resume"):
        fast_forward(streaming, epoch=0, samples_into_epoch=4)


def test_without_shuffle_the_order_is_the_dataset_order_and_drop_last_applies() -> None:
    loader = build_dataloader(INDEXED[:10], batch_size=4, collate_fn=default_collater, shuffle=False)
    assert _ids(loader) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    loader = build_dataloader(INDEXED[:10], batch_size=4, collate_fn=default_collater, shuffle=False, drop_last=False)
    assert _ids(loader)[-1] == [8, 9]


def test_an_iterable_dataset_is_sharded_by_rank_and_by_loader_worker(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", [{"text": s} for s in SENTENCES * 2])
    streamed = StreamingPretrainTextDataset(path, tokenizer, seq_length=4)
    loader = build_dataloader(streamed, batch_size=1, collate_fn=default_collater, dp_rank=1, dp_size=2, num_workers=2)
    got = sorted(tuple(batch["input_ids"][0].tolist()) for batch in loader)
    # 2 ranks x 2 workers make 4 shards; rank 1's worker w reads shard 2 + w: documents 2 + w, 6 + w, ...
    documents = SENTENCES * 2
    expected = []
    for worker in range(2):
        own = write_jsonl(tmp_path / f"worker{worker}.jsonl", [{"text": d} for d in documents[2 + worker :: 4]])
        expected += [tuple(item["input_ids"]) for item in PretrainTextDataset(own, tokenizer, seq_length=4)]
    assert got == sorted(expected)


def test_a_streaming_dataset_resumes_after_the_consumed_batches(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "docs.jsonl", [{"text": s} for s in SENTENCES])
    first = build_dataloader(StreamingPretrainTextDataset(path, tokenizer, seq_length=4), 2, default_collater)
    batches = iter(first)
    for _ in range(3):
        next(batches)
    state = first.state_dict()
    rest = [batch["input_ids"].tolist() for batch in batches]
    resumed = build_dataloader(StreamingPretrainTextDataset(path, tokenizer, seq_length=4), 2, default_collater)
    resumed.load_state_dict(state)
    assert [batch["input_ids"].tolist() for batch in resumed] == rest
    assert rest


def test_creating_an_iterator_does_not_draw_from_the_global_torch_rng() -> None:
    import torch

    from automodel.data import build_dataloader

    loader = build_dataloader(list(range(8)), batch_size=2, collate_fn=list, seed=3)
    torch.manual_seed(0)
    expected = torch.rand(1)
    torch.manual_seed(0)
    next(iter(loader))
    assert torch.equal(torch.rand(1), expected)
