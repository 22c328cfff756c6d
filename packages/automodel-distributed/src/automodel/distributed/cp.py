"""Context parallelism: shard each micro-batch's sequence over the ``cp`` ranks and run attention as ring attention.

torch's ``context_parallel`` patches ``scaled_dot_product_attention`` so that, inside
its context, each rank holds ``seq / cp_size`` tokens of every sequence and the keys
and values travel around the ``cp`` group. The sequence is cut into ``2 x cp_size``
chunks and rank ``r`` keeps chunks ``r`` and ``2 x cp_size - 1 - r`` (head-tail load
balancing), so every rank does the same share of causal attention.

What this supports, and why:

- Causal self-attention through SDPA with no mask (Hugging Face: ``attn_implementation:
  sdpa``). The CP context gives the model an all-ones ``attention_mask`` of the local
  length: transformers then calls SDPA with ``is_causal=True`` instead of reading the
  load-balanced ``position_ids`` (``0, 1, 6, 7`` ...) as packed sequences.
- Right padding, as automodel's default collater makes it: with causal attention a real
  token never sees the padding after it, so the mask is dropped and the padded labels
  are set to -100. Left padding or holes in the mask would need a mask that ring
  attention does not take, and are refused.
- Not packed sequences (``seq_lens``, or ``position_ids`` that restart): ring attention
  runs one causal attention over the whole row, so packed samples would see each other.
- Labels must already be shifted (automodel's collaters shift them), since each rank
  only holds its own chunks of the sequence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor.experimental import context_parallel
from torch.distributed.tensor.experimental._attention import set_rotate_method
from torch.nn.attention import SDPBackend, sdpa_kernel

from automodel.distributed.errors import DistributedError

IGNORE_INDEX = -100
PACKED_KEYS = ("seq_lens", "cu_seqlens")


def _refuse_packed(batch: Mapping[str, Any]) -> None:
    packed = [key for key in PACKED_KEYS if key in batch]
    if packed:
        raise DistributedError(
            f"distributed.cp_size > 1 cannot run on packed sequences (the batch has {packed[0]}): torch's ring "
            "attention runs one causal attention over each whole row, so the samples packed in a row would "
            "attend to each other; set packed_sequence.enabled: false, or cp_size: 1"
        )


def _check_length(length: int, cp_size: int) -> None:
    chunks = 2 * cp_size
    if length % chunks:
        raise DistributedError(
            f"the micro-batch's sequence length {length} is not divisible by 2 x distributed.cp_size = {chunks}: "
            f"context parallelism cuts every sequence into {chunks} equal chunks so each rank gets the same "
            f"work; set dataloader.pad_to_multiple_of: {chunks} (or a multiple of it)"
        )


def _position_ids(batch: Mapping[str, Any], rows: int, length: int, device: torch.device) -> torch.Tensor:
    expected = torch.arange(length, device=device).expand(rows, length)
    given = batch.get("position_ids")
    if given is None:
        return expected.clone()
    if tuple(given.shape[-1:]) != (length,) or not torch.equal(given.expand(rows, length), expected):
        raise DistributedError(
            "distributed.cp_size > 1 needs position_ids 0, 1, ..., length - 1 on every row; these restart or "
            "skip, as in packed sequences, which ring attention cannot keep apart; set "
            "packed_sequence.enabled: false, or cp_size: 1"
        )
    return given.expand(rows, length).clone()


def _right_padding_mask(batch: Mapping[str, Any]) -> torch.Tensor | None:
    mask = batch.get("attention_mask")
    if mask is None:
        return None
    real = mask.bool()
    if (real[:, 1:] & ~real[:, :-1]).any():
        raise DistributedError(
            "distributed.cp_size > 1 supports right padding only (real tokens first, then padding), but this "
            "attention_mask has padding before real tokens; ring attention takes no mask, so pad on the right "
            "(automodel's default collater does), or set cp_size: 1"
        )
    return real


def prepare_cp_batch(batch: Mapping[str, Any], cp_size: int) -> dict[str, Any]:
    """Check that ``batch`` can be sequence-sharded over ``cp_size`` ranks and return the copy CP will shard.

    Args:
        batch: a micro-batch with ``input_ids`` of shape ``(batch, seq)`` and, optionally,
            ``labels``, ``position_ids``, a right-padding ``attention_mask`` and other
            ``(batch, seq, ...)`` tensors.
        cp_size: the size of the ``cp`` mesh dim.

    Returns:
        A new dict: ``position_ids`` (``arange(seq)`` on every row, created when absent),
        ``labels`` with -100 on padding, an all-ones ``attention_mask``, and copies of every
        tensor shaped ``(batch, seq, ...)``; other entries are passed through as they are.

    Raises:
        DistributedError: packed sequences, left padding, or a length not divisible by ``2 x cp_size``.
    """
    if "input_ids" not in batch:
        raise DistributedError("distributed.cp_size > 1 shards the batch's input_ids, and this batch has none")
    _refuse_packed(batch)
    input_ids = batch["input_ids"]
    rows, length = input_ids.shape[:2]
    _check_length(length, cp_size)
    real = _right_padding_mask(batch)
    prepared = {
        key: value.clone() if _is_per_token(value, rows, length) else value
        for key, value in batch.items()
        if key != "attention_mask"
    }
    prepared["position_ids"] = _position_ids(batch, rows, length, input_ids.device)
    prepared["attention_mask"] = torch.ones_like(input_ids)
    if real is not None and "labels" in prepared:
        prepared["labels"] = prepared["labels"].masked_fill(~real, IGNORE_INDEX)
    return prepared


def _is_per_token(value: Any, rows: int, length: int) -> bool:
    return isinstance(value, torch.Tensor) and value.dim() >= 2 and tuple(value.shape[:2]) == (rows, length)


@contextlib.contextmanager
def _ring_attention(cp_mesh: DeviceMesh, buffers: list[torch.Tensor]) -> Iterator[None]:
    set_rotate_method("allgather")
    with (
        sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]),
        context_parallel(cp_mesh, buffers=buffers, buffer_seq_dims=[1] * len(buffers), no_restore_buffers=set(buffers)),
    ):
        yield


def make_cp_batch_and_ctx(
    mesh: DeviceMesh, batch: Mapping[str, Any]
) -> tuple[contextlib.AbstractContextManager, dict[str, Any]]:
    """Prepare ``batch`` for context parallelism over ``mesh["cp"]`` and return the context to run it in.

    Entering the context shards, in place, every ``(batch, seq, ...)`` tensor of the
    returned batch (``input_ids``, ``labels``, ``position_ids``, ``attention_mask``, ...)
    along dim 1, restricts SDPA to the flash and memory-efficient kernels (the ones ring
    attention implements), and patches SDPA into ring attention with the all-gather
    rotation; leaving it restores SDPA. Run forward, loss and backward inside it. The
    caller's tensors are never changed: the returned batch holds copies on this rank's GPU.

    Args:
        mesh: the device mesh from ``build_device_mesh`` on CUDA (its ``cp`` dim is used).
        batch: the micro-batch (see ``prepare_cp_batch`` for what it may hold).

    Returns:
        ``(context, batch)``: the batch is sharded once the context is entered.

    Raises:
        DistributedError: a mesh that is not on CUDA, or a batch ``prepare_cp_batch`` refuses.
    """
    if mesh.device_type != "cuda":
        raise DistributedError(
            f"distributed.cp_size needs CUDA: context parallelism runs torch's ring attention over SDPA "
            f"kernels that exist on GPUs only, and this mesh is on {mesh.device_type}; set cp_size: 1 here"
        )
    cp_mesh = mesh["cp"]
    device = torch.device("cuda", torch.cuda.current_device())
    prepared = prepare_cp_batch(batch, cp_mesh.size())
    rows, length = prepared["input_ids"].shape[:2]
    for key, value in prepared.items():
        if _is_per_token(value, rows, length):
            prepared[key] = value.to(device)
    buffers = [value for value in prepared.values() if _is_per_token(value, rows, length)]
    return _ring_attention(cp_mesh, buffers), prepared
