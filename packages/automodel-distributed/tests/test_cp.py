"""Context parallelism: which batches can be sequence-sharded, the CPU refusal, and ring attention on one GPU.

Two CP ranks need two GPUs; on one GPU a cp mesh of size 1 still runs the whole path
(batch preparation, SDPA patched into ring attention, the kernel restriction) and must
give exactly the plain model's loss and gradients.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from strategy_workers import tiny_llama
from torch.nn.attention import SDPBackend, sdpa_kernel

from automodel.distributed.cp import make_cp_batch_and_ctx, prepare_cp_batch
from automodel.distributed.errors import DistributedError


def _batch(length: int = 8) -> dict[str, torch.Tensor]:
    """Two rows of ``length`` tokens, the second right-padded after 5 real tokens, as the default collater makes."""
    input_ids = torch.arange(2 * length).view(2, length) % 96
    mask = torch.ones(2, length, dtype=torch.long)
    mask[1, 5:] = 0
    return {"input_ids": input_ids, "labels": input_ids.roll(-1, dims=1), "attention_mask": mask}


def test_a_right_padded_batch_gets_positions_a_full_mask_and_ignored_padding_labels() -> None:
    batch = _batch()
    original = {key: value.clone() for key, value in batch.items()}
    batch["loss_weight"] = torch.ones(2, 8, 3)
    batch["num_label_tokens"] = 11
    prepared = prepare_cp_batch(batch, cp_size=2)
    assert torch.equal(prepared["position_ids"], torch.arange(8).expand(2, 8))
    assert torch.equal(prepared["attention_mask"], torch.ones(2, 8, dtype=torch.long))
    assert prepared["labels"][1, 5:].eq(-100).all() and torch.equal(prepared["labels"][0], original["labels"][0])
    assert prepared["num_label_tokens"] == 11
    for key in ("input_ids", "labels", "loss_weight"):
        assert prepared[key] is not batch[key]
    for key, value in original.items():
        assert torch.equal(batch[key], value)


def test_counting_positions_given_once_for_all_rows_are_accepted() -> None:
    batch = {"input_ids": torch.zeros(3, 4, dtype=torch.long), "position_ids": torch.arange(4).unsqueeze(0)}
    assert torch.equal(prepare_cp_batch(batch, cp_size=2)["position_ids"], torch.arange(4).expand(3, 4))


def test_packed_sequences_are_refused() -> None:
    batch = {"input_ids": torch.zeros(1, 8, dtype=torch.long), "seq_lens": torch.tensor([[5, 3]])}
    with pytest.raises(DistributedError, match=r"packed sequences .* set packed_sequence\.enabled: false"):
        prepare_cp_batch(batch, cp_size=2)
    restarting = {
        "input_ids": torch.zeros(1, 8, dtype=torch.long),
        "position_ids": torch.tensor([[0, 1, 2, 0, 1, 2, 3, 4]]),
    }
    with pytest.raises(DistributedError, match=r"position_ids 0, 1, \.\.\., length - 1 on every row"):
        prepare_cp_batch(restarting, cp_size=2)


def test_left_padding_is_refused() -> None:
    batch = _batch()
    batch["attention_mask"] = batch["attention_mask"].flip(1)
    with pytest.raises(DistributedError, match="right padding only"):
        prepare_cp_batch(batch, cp_size=2)


def test_a_length_not_divisible_by_twice_cp_size_names_pad_to_multiple_of() -> None:
    with pytest.raises(DistributedError) as caught:
        prepare_cp_batch(_batch(length=6), cp_size=2)
    message = str(caught.value)
    assert "sequence length 6 is not divisible by 2 x distributed.cp_size = 4" in message
    assert "dataloader.pad_to_multiple_of: 4" in message


def test_a_batch_without_input_ids_is_refused() -> None:
    with pytest.raises(DistributedError, match="input_ids"):
        prepare_cp_batch({"inputs_embeds": torch.zeros(1, 4, 8)}, cp_size=1)


def test_a_cpu_mesh_is_refused(cpu_mesh) -> None:
    with pytest.raises(DistributedError, match=r"distributed\.cp_size needs CUDA.*this mesh is on cpu"):
        make_cp_batch_and_ctx(cpu_mesh, _batch())


@pytest.mark.gpu
def test_the_context_shards_in_place_and_patches_sdpa_only_inside(cuda_mesh) -> None:
    batch = _batch()
    plain_sdpa = F.scaled_dot_product_attention
    context, prepared = make_cp_batch_and_ctx(cuda_mesh, batch)
    with context:
        assert F.scaled_dot_product_attention is not plain_sdpa
        assert prepared["input_ids"].shape == (2, 8) and prepared["input_ids"].is_cuda
        assert torch.equal(prepared["position_ids"].cpu(), torch.arange(8).expand(2, 8))
        assert prepared["labels"][1, 5:].eq(-100).all()
    assert F.scaled_dot_product_attention is plain_sdpa
    assert torch.equal(batch["input_ids"], _batch()["input_ids"]) and not batch["input_ids"].is_cuda


def test_transformers_runs_load_balanced_positions_as_one_causal_attention(monkeypatch) -> None:
    """Rank 0 of cp 2 holds positions 0, 1, 6, 7; with CP's all-ones mask SDPA must get is_causal and no mask."""
    calls = []
    plain_sdpa = F.scaled_dot_product_attention

    def recording_sdpa(*args, **kwargs):
        calls.append((kwargs.get("attn_mask"), kwargs.get("is_causal")))
        return plain_sdpa(*args, **kwargs)

    monkeypatch.setattr(F, "scaled_dot_product_attention", recording_sdpa)
    local = prepare_cp_batch({"input_ids": torch.arange(16).view(2, 8)}, cp_size=2)
    positions = torch.tensor([[0, 1, 6, 7]]).expand(2, 4)
    with torch.no_grad():
        tiny_llama()(
            input_ids=local["input_ids"][:, :4],
            position_ids=positions,
            attention_mask=local["attention_mask"][:, :4],
            use_cache=False,
        )
    assert calls and all(mask is None and causal for mask, causal in calls)


def _loss_and_grads(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, list[torch.Tensor]]:
    labels = batch.pop("labels")
    logits = model(**batch, use_cache=False).logits
    loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
    loss.backward()
    grads = [p.grad.detach().float().clone() for p in model.parameters()]
    model.zero_grad()
    return loss.detach(), grads


@pytest.mark.gpu
def test_ring_attention_on_one_rank_gives_the_plain_loss_and_gradients(cuda_mesh) -> None:
    model = tiny_llama().to("cuda", torch.bfloat16)
    reference = prepare_cp_batch({key: value.cuda() for key, value in _batch(16).items()}, cp_size=1)
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        expected_loss, expected_grads = _loss_and_grads(model, dict(reference))
    context, prepared = make_cp_batch_and_ctx(cuda_mesh, _batch(16))
    with context:
        loss, grads = _loss_and_grads(model, prepared)
    torch.testing.assert_close(loss, expected_loss, atol=1e-3, rtol=1e-3)
    for grad, expected in zip(grads, expected_grads, strict=True):
        torch.testing.assert_close(grad, expected, atol=2e-2, rtol=2e-2)
