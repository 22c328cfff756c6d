"""One rank of the 2-process gloo retrieval test, and the data and encoder both ranks and the test share."""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from automodel.training import InfoNCELoss, TrainingError, cached_contrastive_backward

QUERIES, GROUP, FEATURES = 8, 3, 12


class Encoder(torch.nn.Module):
    """A linear encoder with a learnable log-temperature (not used in forward, like a contrastive model's)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(FEATURES, 6)
        self.log_temperature = torch.nn.Parameter(torch.tensor(math.log(0.05)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.proj(features)


def global_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """The whole step's query features [8, 12] and passage features [8 * 3, 12], the same on every rank."""
    generator = torch.Generator().manual_seed(1)
    return torch.randn(QUERIES, FEATURES, generator=generator), torch.randn(
        QUERIES * GROUP, FEATURES, generator=generator
    )


def _sum_gradients(group, bucket):
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda future: future.value()[0])


def contrastive_on_two_ranks(rank: int, port: int, out_dir: str) -> None:
    """Each rank takes half of the global batch; writes rank{R}.pt with its losses and (unreduced) gradients.

    Then a DDP model summing gradients trains through the gradient cache with a learnable
    temperature, and an uneven batch (3 queries on rank 1) must be refused on both ranks.
    """
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        half = QUERIES // 2
        queries, passages = global_batch()
        local_q = queries[rank * half : (rank + 1) * half]
        local_p = passages[rank * half * GROUP : (rank + 1) * half * GROUP]
        results = {}
        for symmetric in (False, True):
            encoder = Encoder()
            features_q, features_p = local_q.clone().requires_grad_(), local_p.clone().requires_grad_()
            loss_fn = InfoNCELoss(symmetric=symmetric, cross_device_negatives=True)
            loss = loss_fn(encoder(features_q), encoder(features_p), GROUP, num_queries=QUERIES)
            loss.backward()
            results[f"symmetric={symmetric}"] = {
                "loss": loss.detach(),
                "weight": encoder.proj.weight.grad,
                "queries": features_q.grad,
                "passages": features_p.grad,
            }

        model = Encoder()
        ddp = DistributedDataParallel(model)
        ddp.register_comm_hook(None, _sum_gradients)
        loss = cached_contrastive_backward(
            lambda batch: ddp(batch["features"]),
            {"features": local_q},
            {"features": local_p},
            InfoNCELoss(symmetric=True, cross_device_negatives=True),
            GROUP,
            chunk_size=5,
            num_queries=QUERIES,
            no_sync=ddp.no_sync,
            temperature=model.log_temperature.exp(),
        )
        results["cached"] = {"loss": loss, **{name: p.grad for name, p in model.named_parameters()}}

        uneven = local_q[:3] if rank == 1 else local_q
        try:
            InfoNCELoss(cross_device_negatives=True)(uneven, local_p[: len(uneven) * GROUP], GROUP)
        except TrainingError as error:
            results["uneven"] = str(error)
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()
