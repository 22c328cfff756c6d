"""Megatron-FSDP: refused clearly without its package or CUDA; on a GPU it shards a tiny Llama that then trains."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import torch.nn.functional as F
from strategy_workers import tiny_llama

from automodel.distributed.config import parse_distributed_config
from automodel.distributed.errors import DistributedError
from automodel.distributed.megatron import apply_megatron_fsdp, prepare_megatron_optimizer


def test_without_the_package_it_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DistributedError, match=r"pip install 'automodel-distributed\[megatron\]'"):
        apply_megatron_fsdp(tiny_llama(), None, parse_distributed_config({}))
    with pytest.raises(DistributedError, match="needs the megatron-fsdp package"):
        prepare_megatron_optimizer(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))]))


def test_without_cuda_it_is_refused(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DistributedError, match="runs on CUDA GPUs only"):
        apply_megatron_fsdp(tiny_llama(), None, parse_distributed_config({}))


@pytest.mark.parametrize(
    ("section", "key"),
    [({"cpu_offload": True}, "cpu_offload"), ({"mixed_precision": {"output_dtype": "float32"}}, "output_dtype")],
)
def test_fsdp2_only_options_are_refused(monkeypatch, section: dict, key: str) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    with pytest.raises(DistributedError, match=f"{key} is an FSDP2 option that megatron_fsdp does not have"):
        apply_megatron_fsdp(tiny_llama(), None, parse_distributed_config(section))


@pytest.mark.gpu
def test_a_sharded_tiny_llama_trains_on_one_gpu(cuda_mesh) -> None:
    pytest.importorskip("megatron_fsdp", reason="needs the megatron-fsdp package")
    model = tiny_llama().cuda()
    wrapped = apply_megatron_fsdp(model, cuda_mesh, parse_distributed_config({"strategy": "megatron_fsdp"}))
    assert type(wrapped).__name__ == "MegatronFSDP" and wrapped.module is model
    assert wrapped.fsdp_unit_modules == [type(model.model.layers[0])]
    optimizer = prepare_megatron_optimizer(torch.optim.AdamW(wrapped.parameters(), lr=1e-2, weight_decay=0.0))
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, 96, (2, 16), generator=generator).cuda()
    losses = []
    for _ in range(4):
        logits = wrapped(input_ids=input_ids, use_cache=False).logits
        loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), input_ids[:, 1:].flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
