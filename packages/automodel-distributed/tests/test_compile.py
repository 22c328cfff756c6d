"""The ``compile:`` section: its checks, and compiled blocks training exactly like eager ones on CPU (inductor)."""

from __future__ import annotations

import pytest
import torch
from strategy_workers import reference_losses, tiny_llama, train
from torch._dynamo.utils import counters

from automodel.distributed import DistributedError, compile_blocks, parse_compile_config, setup_parallelism


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"enable": True}, r"compile\.enable is not a compile setting; did you mean `enabled`\?"),
        ({"enabled": "yes"}, r"compile\.enabled must be true or false, got 'yes'"),
        ({"fullgraph": 1}, r"compile\.fullgraph must be true or false"),
        ({"dynamic": "auto"}, r"compile\.dynamic must be true, false or null"),
        ({"mode": "fast"}, r"compile\.mode is 'fast'; choose one of default, reduce-overhead"),
        ({"backend": "inductr"}, r"compile\.backend is 'inductr', which torch\.compile does not know"),
    ],
)
def test_bad_compile_settings_name_the_key(section: dict, message: str) -> None:
    with pytest.raises(DistributedError, match=message):
        parse_compile_config(section)


def test_no_section_leaves_the_model_eager() -> None:
    model = tiny_llama()
    assert parse_compile_config(None).enabled is False
    assert compile_blocks(model, parse_compile_config({})) == 0
    assert all(getattr(block, "_compiled_call_impl", None) is None for block in model.model.layers)


def test_a_model_without_blocks_is_a_clear_error() -> None:
    with pytest.raises(DistributedError, match=r"compile\.enabled: Linear has no repeated transformer blocks"):
        compile_blocks(torch.nn.Linear(2, 2), parse_compile_config({"enabled": True}))


def test_compiled_blocks_train_like_eager_share_one_graph_and_keep_their_names() -> None:
    torch._dynamo.reset()
    counters.clear()
    model = tiny_llama()
    names = list(model.state_dict())
    assert compile_blocks(model, parse_compile_config({"enabled": True})) == 2
    losses = train(model, slice(None))
    assert losses == pytest.approx(reference_losses(), abs=1e-5)
    # Both blocks run the one graph compiled for the first: compile time does not grow with depth.
    assert counters["stats"]["unique_graphs"] == 1
    assert list(model.state_dict()) == names


def test_generation_runs_the_compiled_blocks_eagerly() -> None:
    torch._dynamo.reset()
    counters.clear()
    model = tiny_llama().eval()
    compile_blocks(model, parse_compile_config({"enabled": True}))
    parallel = setup_parallelism(None)
    prompt = torch.tensor([[3, 4, 5]])
    with parallel.generation(model) as inner:
        out = inner.generate(prompt, max_new_tokens=4, min_new_tokens=4, do_sample=False, pad_token_id=0)
    assert out.shape == (1, 7)
    assert counters["stats"]["unique_graphs"] == 0
