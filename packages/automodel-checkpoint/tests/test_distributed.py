"""Two real gloo processes with FSDP2 save; one process resumes from what they wrote."""

from __future__ import annotations

import json
import socket

import torch
from checkpoint_distributed_worker import save_on_two_ranks
from checkpoint_test_helpers import build_run
from safetensors.torch import load_file

from automodel.checkpoint import Checkpointer, load_hf_weights


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_fsdp2_ranks_save_and_one_process_resumes_from_their_checkpoint(tmp_path, forkserver) -> None:
    port = _free_port()
    ranks = [forkserver.Process(target=save_on_two_ranks, args=(rank, str(tmp_path), port)) for rank in range(2)]
    for process in ranks:
        process.start()
    for process in ranks:
        process.join(timeout=120)
    assert [p.exitcode for p in ranks] == [0, 0]
    reference = load_file(tmp_path / "reference.safetensors")
    ckpt = tmp_path / "ckpt"
    step_dir = ckpt / "step_000005"
    assert (ckpt / "latest").read_text().strip() == "step_000005"

    # Each rank wrote its own RNG and data loader state, and its own optimizer shard.
    assert sorted(p.name for p in (step_dir / "rng").iterdir()) == ["rank0.json", "rank1.json"]
    assert sorted(p.name for p in (step_dir / "dataloader").iterdir()) == ["rank0.json", "rank1.json"]
    rng = [json.loads((step_dir / "rng" / f"rank{r}.json").read_text())["torch"] for r in range(2)]
    assert rng[0] != rng[1]
    assert sorted(p.name for p in (step_dir / "optim").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]

    # The manifest lists every rank's files; a damaged one was refused on both ranks with the same message.
    manifest = json.loads((step_dir / "manifest.json").read_text())["files"]
    assert {"optim/__1_0.distcp", "rng/rank1.json", "dataloader/rank1.json", "model/model.safetensors.index.json"} <= {
        *manifest
    }
    outcomes = [(tmp_path / f"damaged_load_rank{r}.txt").read_text() for r in range(2)]
    assert outcomes[0] == outcomes[1]
    assert f"{ckpt / 'step_000003' / 'dataloader' / 'rank1.json'} does not match its xxh3_128 checksum" in outcomes[0]

    # model/ holds the whole weights, gathered from the shards, at each saved step (written in the background).
    for step in (3, 5):
        consolidated = load_hf_weights(ckpt / f"step_{step:06d}" / "model")
        for name, value in consolidated.items():
            assert torch.equal(value, reference[f"step{step}.model.{name}"]), (step, name)
    # ... and load back into a model sharded over the two ranks.
    for name, value in load_hf_weights(step_dir / "model").items():
        assert torch.equal(reference[f"reloaded.{name}"], value)

    # One process resumes the two-process run: weights, AdamW moments and LR schedule.
    single = build_run(seed=1)
    state = Checkpointer(ckpt).load(
        step_dir, model=single.model, optimizer=single.optimizer, stateful={"lr_scheduler": single.lr_scheduler}
    )
    assert state["step"] == 5
    for name, value in single.model.state_dict().items():
        assert torch.equal(value, reference[f"step5.model.{name}"]), name
    for name, param in single.model.named_parameters():
        assert torch.equal(single.optimizer.state[param]["exp_avg"], reference[f"step5.exp_avg.{name}"]), name
    assert single.lr_scheduler.last_epoch == 5
