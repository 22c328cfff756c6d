"""The device mesh, its flattened dims and the data-parallel helpers on two real gloo processes."""

from __future__ import annotations

import pytest
from mesh_workers import describe_layouts, fail_on_rank_one

from automodel.distributed.testing import run_on_ranks

LAYOUTS = {
    "dp_shard": ({}, {"dp_replicate": 1, "dp_shard": 2, "cp": 1, "tp": 1, "dp": 2, "dp_shard_cp": 2, "dp_cp": 2}),
    "tp": ({"tp_size": 2}, {"dp_replicate": 1, "dp_shard": 1, "cp": 1, "tp": 2, "dp": 1, "dp_shard_cp": 1, "dp_cp": 1}),
    "dp_replicate": (
        {"dp_replicate_size": 2},
        {"dp_replicate": 2, "dp_shard": 1, "cp": 1, "tp": 1, "dp": 2, "dp_shard_cp": 1, "dp_cp": 2},
    ),
}


@pytest.fixture(scope="module")
def described(tmp_path_factory) -> tuple[list[list[dict]], str]:
    """Each rank's description of every layout (one run of two processes), and what rank0_print wrote."""
    path = tmp_path_factory.mktemp("print") / "out.txt"
    sections = [section for section, _ in LAYOUTS.values()]
    results = run_on_ranks(describe_layouts, 2, args=(sections, str(path)), preload=["mesh_workers"])
    return results, path.read_text(encoding="utf-8")


@pytest.mark.parametrize("index", range(len(LAYOUTS)), ids=list(LAYOUTS))
def test_mesh_dims_and_flattened_dims_have_the_layout_sizes(described, index: int) -> None:
    results, _ = described
    expected = list(LAYOUTS.values())[index][1]
    for per_rank in results:
        assert per_rank[index]["dims"] == expected


def test_data_parallel_coordinates_are_the_rank_over_dp_and_zero_over_tp(described) -> None:
    results, _ = described
    index = list(LAYOUTS)
    for rank, per_rank in enumerate(results):
        assert per_rank[index.index("dp_shard")]["coordinates"] == (rank, 2)
        assert per_rank[index.index("dp_replicate")]["coordinates"] == (rank, 2)
        assert per_rank[index.index("tp")]["coordinates"] == (0, 1)


def test_sum_over_data_parallel_adds_dp_ranks_but_not_tp_ranks(described) -> None:
    results, _ = described
    index = list(LAYOUTS)
    for rank, per_rank in enumerate(results):
        assert per_rank[index.index("dp_shard")]["sum"] == 3.0
        assert per_rank[index.index("dp_replicate")]["sum"] == 3.0
        assert per_rank[index.index("tp")]["sum"] is None
        assert per_rank[index.index("tp")]["reduction_size"] == 1
        assert per_rank[index.index("dp_shard")]["reduction_size"] == 2
        assert all(layout["unchanged"] == rank + 1 for layout in per_rank)


def test_rank0_print_prints_once(described) -> None:
    _, printed = described
    assert printed == "hello from rank 0\n"


def test_a_failing_rank_raises_with_its_traceback() -> None:
    with pytest.raises(RuntimeError) as caught:
        run_on_ranks(fail_on_rank_one, 2, preload=["mesh_workers"])
    message = str(caught.value)
    assert "rank 1 of 2 failed" in message
    assert "ValueError: boom from rank 1" in message and "fail_on_rank_one" in message
