"""Batching image-text conversations with a processor, with pre-shifted labels on assistant text only.

Both collates return the processor's output (``input_ids``, ``attention_mask``,
``pixel_values`` and whatever else it gives, such as ``image_grid_thw``, ``image_sizes`` or
``token_type_ids``) plus ``labels`` of the shape of ``input_ids``: ``labels[:, i]`` is
``input_ids[:, i + 1]`` where that token is assistant text (including the turn's
end-of-turn token) and -100 elsewhere, the last position included. ``input_ids`` keeps its
full length so that every tensor the processor returns stays aligned with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from automodel.data.errors import DataError
from automodel.data.llm.samples import IGNORE_INDEX

if TYPE_CHECKING:
    from transformers import ProcessorMixin

GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")


def encode_conversations(conversations: Sequence[list[dict[str, Any]]], processor: ProcessorMixin) -> dict[str, Any]:
    """Render conversations with the processor's chat template and process texts and images together.

    Args:
        conversations: normalized conversations whose image parts hold decoded images.
        processor: a Hugging Face processor with a chat template.

    Returns:
        The processor's output as tensors, right- or left-padded as its tokenizer pads. The
        tokenizer adds no special tokens when every text already begins with its BOS token.
    """
    texts = processor.apply_chat_template(list(conversations), tokenize=False)
    images = [[p["image"] for m in conv for p in m["content"] if p["type"] == "image"] for conv in conversations]
    bos = processor.tokenizer.bos_token
    return processor(
        text=texts,
        images=images if any(images) else None,
        padding=True,
        return_tensors="pt",
        add_special_tokens=not (bos and all(text.startswith(bos) for text in texts)),
    )


def chat_template(processor: ProcessorMixin) -> str | None:
    """The processor's chat template (its ``default`` one when it has several), or None."""
    template = processor.chat_template
    return template.get("default") if isinstance(template, dict) else template


def default_vlm_collate(samples: Sequence[dict[str, Any]], processor: ProcessorMixin) -> dict[str, torch.Tensor]:
    """Batch samples using the chat template's assistant mask (its ``{% generation %}`` markers).

    The mask comes from the processor's tokenizer rendering the same template
    (``return_assistant_tokens_mask``), on the text before the processor expands each
    image placeholder into image tokens; it is carried onto the processor's ``input_ids``
    by walking both in order, the inserted image tokens taking no mask. This does not rely
    on the processor's own assistant mask, which older transformers misalign after images.

    Args:
        samples: items of an image-text dataset, each ``{"messages": conversation}``.
        processor: a processor whose chat template wraps assistant content (and the
            end-of-turn token) in ``{% generation %}`` ... ``{% endgeneration %}``.

    Returns:
        The processor's tensors plus pre-shifted ``labels`` (see the module docstring).

    Raises:
        DataError: the template has no generation markers, the processor's tokens do not
            contain the template's tokens in order, or a sample has no assistant token.
    """
    template = chat_template(processor)
    if not template or GENERATION_MARKER.search(template) is None:
        name = type(processor).__name__
        raise DataError(
            f"the chat template of {name} has no {{% generation %}} markers, so its assistant tokens cannot be found",
            hint=f"register a collate for it, e.g. register_vlm_collate({name!r}, TurnMarkerCollate(start, end)) "
            "with the template's assistant-turn header and end-of-turn text, or use a template with "
            "{% generation %} ... {% endgeneration %} around assistant content",
        )
    conversations = [sample["messages"] for sample in samples]
    batch = encode_conversations(conversations, processor)
    rendered = processor.tokenizer.apply_chat_template(
        conversations, chat_template=template, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    pairs = enumerate(zip(rendered["input_ids"], rendered["assistant_masks"], strict=True))
    assistant = torch.stack(
        [_carry_mask(batch["input_ids"][i], batch["attention_mask"][i], ids, mask, i) for i, (ids, mask) in pairs]
    )
    return {**batch, "labels": shifted_labels(batch, assistant, processor, "the chat template's generation markers")}


@dataclass(frozen=True)
class TurnMarkerCollate:
    """A collate that finds assistant turns by the text that opens and closes them.

    Called as ``collate(samples, processor)``; returns the processor's tensors plus
    pre-shifted ``labels`` on the tokens after each ``start`` up to and including the next
    ``end`` (to the end of the sequence when there is none). Both texts are tokenized
    alone, so they must tokenize the same way inside a conversation, as a template's
    special tokens and the newline after a role name do.

    Attributes:
        start: the text that opens an assistant turn, e.g. ``"<|im_start|>assistant\\n"``.
        end: the text that closes it, e.g. ``"<|im_end|>"``; its tokens are targets.
    """

    start: str
    end: str

    def __call__(self, samples: Sequence[dict[str, Any]], processor: ProcessorMixin) -> dict[str, torch.Tensor]:
        """Batch ``{"messages": conversation}`` samples with ``processor`` (see the class docstring)."""
        batch = encode_conversations([sample["messages"] for sample in samples], processor)
        start_ids = processor.tokenizer(self.start, add_special_tokens=False)["input_ids"]
        end_ids = processor.tokenizer(self.end, add_special_tokens=False)["input_ids"]
        assistant = torch.stack([_turns(row, start_ids, end_ids) for row in batch["input_ids"]])
        return {**batch, "labels": shifted_labels(batch, assistant, processor, f"the turn marker {self.start!r}")}


def shifted_labels(
    batch: dict[str, Any], assistant: torch.Tensor, processor: ProcessorMixin, found_by: str
) -> torch.Tensor:
    """Return pre-shifted labels: the next token where it is assistant text, real and not an image token.

    Raises:
        DataError: when a sample has no target, naming its position in the batch and ``found_by``.
    """
    input_ids = batch["input_ids"]
    target = assistant & batch["attention_mask"].bool()
    image_token_id = getattr(processor, "image_token_id", None)
    if image_token_id is not None:
        target &= input_ids != image_token_id
    missing = (~target.any(dim=1)).nonzero().flatten().tolist()
    if missing:
        raise DataError(
            f"samples {missing} of the batch have no assistant token found by {found_by}",
            hint="check that the processor's chat template renders assistant turns the way its collate expects",
        )
    labels = torch.full_like(input_ids, IGNORE_INDEX)
    labels[:, :-1] = torch.where(target[:, 1:], input_ids[:, 1:], IGNORE_INDEX)
    return labels


def _carry_mask(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, template_ids: list[int], template_mask: list[int], index: int
) -> torch.Tensor:
    """Carry a mask over the template's tokens onto the processor's, which hold them in order plus image tokens."""
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    ids = input_ids.tolist()
    matched = 0
    for position in attention_mask.nonzero().flatten().tolist():
        if matched < len(template_ids) and ids[position] == template_ids[matched]:
            mask[position] = bool(template_mask[matched])
            matched += 1
    if matched < len(template_ids):
        raise DataError(
            f"sample {index} of the batch: the processor's tokens do not contain the chat template's tokens in order, "
            "so the assistant mask cannot be carried over",
            hint="register a TurnMarkerCollate for this processor class with register_vlm_collate",
        )
    return mask


def _turns(input_ids: torch.Tensor, start: list[int], end: list[int]) -> torch.Tensor:
    """Mark the tokens after each occurrence of ``start`` up to and including the next ``end``."""
    mask = torch.zeros_like(input_ids, dtype=torch.bool)
    starts, ends = _occurrences(input_ids, start), _occurrences(input_ids, end)
    position = 0
    for opening in starts:
        if opening < position:
            continue
        begin = opening + len(start)
        close = next((e for e in ends if e >= begin), None)
        position = len(input_ids) if close is None else close + len(end)
        mask[begin:position] = True
    return mask


def _occurrences(input_ids: torch.Tensor, pattern: list[int]) -> list[int]:
    """The positions where the token sequence ``pattern`` begins in ``input_ids``."""
    if not pattern or len(pattern) > len(input_ids):
        return []
    windows = input_ids.unfold(0, len(pattern), 1)
    return (windows == torch.as_tensor(pattern, dtype=input_ids.dtype)).all(dim=1).nonzero().flatten().tolist()
