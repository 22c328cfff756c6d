"""No tests: the tiny denoiser, synthetic latents and the gloo ranks that the diffusion tests share.

The 2-process test starts ``two_rank_worker`` through a forkserver, which imports this module by name.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from automodel.training.diffusion import ExponentialMovingAverage, FlowMatchingObjective, diffusion_train_step

CHANNELS, SIZE, EMBED = 4, 8, 6
GLOBAL_BATCH, STEPS = 4, 3


class TinyDenoiser(torch.nn.Module):
    """Two 3x3 convolutions; the timestep and pooled prompt embedding are added to the hidden channels."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv_in = torch.nn.Conv2d(CHANNELS, width, 3, padding=1)
        self.time = torch.nn.Linear(1, width)
        self.text = torch.nn.Linear(EMBED, width)
        self.conv_out = torch.nn.Conv2d(width, CHANNELS, 3, padding=1)

    def forward(self, latents, timesteps, pooled_prompt_embeds, **_):
        bias = self.time(timesteps[:, None].float() / 1000) + self.text(pooled_prompt_embeds)
        return self.conv_out(F.silu(self.conv_in(latents) + bias[:, :, None, None]))


def dataset(size: int = 8) -> dict:
    """Fixed synthetic samples: smooth latents [N, 4, 8, 8] and pooled prompt embeddings [N, 6]."""
    generator = torch.Generator().manual_seed(7)
    coarse = torch.randn(size, CHANNELS, SIZE // 4, SIZE // 4, generator=generator)
    return {
        "indices": torch.arange(size),
        "latents": F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear"),
        "pooled_prompt_embeds": torch.randn(size, EMBED, generator=generator),
        "caption": ["a sample"] * size,
    }


def rows(batch: dict, start: int, stop: int) -> dict:
    """Samples ``start:stop`` of a batch (non-tensor values kept whole)."""
    return {k: v[start:stop] if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def ema_model() -> torch.nn.Sequential:
    """The small MLP whose EMA the FSDP2 test compares."""
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))


def ema_data() -> tuple[torch.Tensor, torch.Tensor]:
    """The MLP's fixed inputs [4, 4] and targets [4, 3]."""
    generator = torch.Generator().manual_seed(5)
    return torch.randn(4, 4, generator=generator), torch.randn(4, 3, generator=generator)


def make_ema(model: torch.nn.Module) -> ExponentialMovingAverage:
    """The EMA both the one-process and the two-process runs use."""
    return ExponentialMovingAverage(model.named_parameters(), decay=0.8, update_after_step=1, warmup=True)


def train_ema_model(model: torch.nn.Module, ema: ExponentialMovingAverage, inputs, targets, total: int) -> None:
    """SGD steps on the summed squared error divided by ``total`` (the global batch), each followed by an EMA update."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.2)
    for _ in range(STEPS):
        loss = ((model(inputs) - targets) ** 2).sum() / total
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        ema.update()


def _sum(tensor: torch.Tensor) -> torch.Tensor:
    dist.all_reduce(tensor)
    return tensor


def _sum_gradients(group, bucket):
    work = dist.all_reduce(bucket.buffer(), group=group, async_op=True)
    return work.get_future().then(lambda future: future.value()[0])


def two_rank_worker(rank: int, port: int, out_dir: str) -> None:
    """One of two gloo ranks; writes rank{R}.pt.

    DDP (gradients summed): ``STEPS`` diffusion steps on this rank's half of the global batch,
    recording the step losses. FSDP2: the MLP trained on this rank's half with an EMA; records the
    EMA's full shadows, the EMA-swapped model's outputs, and the shadows after a DCP save and load.
    """
    from torch.distributed import checkpoint as dcp
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        half = GLOBAL_BATCH // 2
        local = rows(dataset(), rank * half, (rank + 1) * half)
        ddp = DistributedDataParallel(TinyDenoiser())
        ddp.register_comm_hook(None, _sum_gradients)
        optimizer = torch.optim.AdamW(ddp.parameters(), lr=1e-2)
        objective = FlowMatchingObjective(seed=11)
        losses = [
            diffusion_train_step(ddp, [local], objective, optimizer, step=step, all_reduce=_sum, max_grad_norm=1.0).loss
            for step in range(STEPS)
        ]

        mesh = init_device_mesh("cpu", (2,))
        model = ema_model()
        for layer in (model[0], model[2], model):
            fully_shard(layer, mesh=mesh)
            layer.set_gradient_divide_factor(1.0)  # sum gradients over the ranks, as a plain SUM (gloo)
            layer.set_force_sum_reduction_for_comms(True)
        ema = make_ema(model)
        inputs, targets = ema_data()
        train_ema_model(model, ema, inputs[rank * 2 : rank * 2 + 2], targets[rank * 2 : rank * 2 + 2], total=4)
        shadows = {name: shadow.full_tensor() for name, shadow in ema.shadow_state_dict().items()}
        with torch.no_grad(), ema.swapped():
            swapped_output = model(inputs)
        restored_output = model(inputs).detach()

        dcp.save({"ema": ema.state_dict()}, checkpoint_id=str(Path(out_dir) / "dcp"))
        fresh = make_ema(model)
        state = {"ema": fresh.state_dict()}
        dcp.load(state, checkpoint_id=str(Path(out_dir) / "dcp"))
        fresh.load_state_dict(state["ema"])
        loaded = {name: shadow.full_tensor() for name, shadow in fresh.shadow_state_dict().items()}
        torch.save(
            {
                "losses": losses,
                "shadows": shadows,
                "swapped_output": swapped_output,
                "restored_output": restored_output,
                "loaded": loaded,
                "loaded_updates": int(fresh.num_updates),
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        dist.destroy_process_group()
