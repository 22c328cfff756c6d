"""Which collate a processor gets: one registered for its class, or the template-mask default."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import torch

from automodel.data.vlm.collate import TurnMarkerCollate, default_vlm_collate

if TYPE_CHECKING:
    from transformers import ProcessorMixin

VLMCollate = Callable[[Sequence[dict[str, Any]], Any], dict[str, torch.Tensor]]

CHATML_TURNS = TurnMarkerCollate("<|im_start|>assistant\n", "<|im_end|>")

# Processor class name -> collate, for processors whose chat templates have no generation markers.
VLM_COLLATES: dict[str, VLMCollate] = {
    "Gemma3Processor": TurnMarkerCollate("<start_of_turn>model\n", "<end_of_turn>"),
    "Qwen2VLProcessor": CHATML_TURNS,
    "Qwen2_5_VLProcessor": CHATML_TURNS,
}


def register_vlm_collate(processor_class_name: str, collate: VLMCollate) -> None:
    """Make ``collate(samples, processor)`` the collate of processors of the named class (replacing any)."""
    VLM_COLLATES[processor_class_name] = collate


def collate_for(processor: ProcessorMixin) -> Callable[[Sequence[dict[str, Any]]], dict[str, torch.Tensor]]:
    """Return the collate function for a processor, bound to it, ready to be a data loader's ``collate_fn``.

    The collate is the one registered under the name of the processor's class or, failing
    that, of its nearest base class, else ``default_vlm_collate``. The returned
    ``functools.partial`` takes a list of samples and returns a dict of tensors; its
    ``func`` is the collate chosen.
    """
    collate = next(
        (VLM_COLLATES[cls.__name__] for cls in type(processor).__mro__ if cls.__name__ in VLM_COLLATES),
        default_vlm_collate,
    )
    return functools.partial(collate, processor=processor)
