"""Validation: token-weighted loss and perplexity, and greedy-generation exact match."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch

from automodel.training.loss import IGNORE_INDEX, forward_loss, logits_of
from automodel.training.step import MicroBatchHook, count_label_tokens, to_device


@torch.no_grad()
def validation_loss(
    model: torch.nn.Module,
    dataloader: Iterable[dict],
    loss_fn: Any,
    device: Any = "cpu",
    *,
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    prepare_micro_batch: MicroBatchHook | None = None,
    output_logits: Callable[[Any], torch.Tensor] = logits_of,
) -> dict:
    """Return ``{"val_loss", "val_ppl", "val_tokens"}`` over ``dataloader`` in eval mode without gradients.

    The loss is the mean over every label token of the set (not a mean of batch means).
    With ``all_reduce`` (a sum over data-parallel ranks, each reading its own shard of the
    set) the result covers every rank's batches; ``prepare_micro_batch`` and ``output_logits``
    apply as in ``train_step``.
    """
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, dtype=torch.float64, device=device)
    for batch in dataloader:
        batch = to_device(batch, device)
        count = count_label_tokens([batch])
        context, batch = prepare_micro_batch(batch) if prepare_micro_batch else (contextlib.nullcontext(), batch)
        with context:
            loss = forward_loss(model, batch, loss_fn, max(count, 1), output_logits=output_logits)
        sums += torch.stack([loss.detach().double() * count, torch.tensor(float(count), device=device)])
    if all_reduce is not None:
        sums = all_reduce(sums)
    model.train(was_training)
    total, tokens = float(sums[0]), int(sums[1])
    loss = total / tokens if tokens else float("nan")
    return {"val_loss": loss, "val_ppl": math.exp(min(loss, 50.0)) if tokens else float("nan"), "val_tokens": tokens}


def _prompt_and_reference(sample: dict) -> tuple[list[int], list[int]]:
    tokens = [*list(sample["input_ids"]), sample["labels"][-1]]
    cut = int(sample["prompt_length"])
    return tokens[:cut], [t for t in tokens[cut:] if t != IGNORE_INDEX]


@torch.no_grad()
def generation_exact_match(
    model: Any,
    tokenizer: Any,
    samples: Sequence[dict],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    device: Any = "cpu",
    synced_gpus: bool = False,
) -> dict:
    """Greedy-generate an answer for every sample's prompt and compare it with the reference.

    ``samples`` are dataset items with ``input_ids``, pre-shifted ``labels`` and
    ``prompt_length``. Prompts are left-padded in batches and decoded with special tokens
    skipped; a prediction matches when its stripped text equals the stripped reference.
    Pass ``synced_gpus=True`` when the model is sharded (FSDP2, TP) and every rank
    generates the same samples: ranks then keep running forward passes together until all
    are done. Returns ``{"exact_match": 0..1, "predictions": [{"prompt", "reference",
    "prediction", "match"}]}``.
    """
    was_training = model.training
    model.eval()
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    records = []
    for start in range(0, len(samples), batch_size):
        chunk = [_prompt_and_reference(s) for s in samples[start : start + batch_size]]
        width = max(len(prompt) for prompt, _ in chunk)
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p, _ in chunk], device=device)
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p, _ in chunk], device=device)
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id,
            eos_token_id=tokenizer.eos_token_id,
            synced_gpus=synced_gpus,
        )
        for (prompt, reference), generated in zip(chunk, output[:, width:].tolist(), strict=True):
            prediction = tokenizer.decode(generated, skip_special_tokens=True).strip()
            expected = tokenizer.decode(reference, skip_special_tokens=True).strip()
            records.append(
                {
                    "prompt": tokenizer.decode(prompt, skip_special_tokens=True),
                    "reference": expected,
                    "prediction": prediction,
                    "match": prediction == expected,
                }
            )
    model.train(was_training)
    score = sum(r["match"] for r in records) / len(records) if records else float("nan")
    return {"exact_match": score, "predictions": records}


def _text_of(message: dict) -> str:
    content = message["content"]
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if part.get("type") == "text")


def _images_of(conversation: Sequence[dict]) -> list:
    return [
        part["image"]
        for message in conversation
        if not isinstance(message["content"], str)
        for part in message["content"]
        if part.get("type") == "image"
    ]


@torch.no_grad()
def image_text_exact_match(
    model: Any,
    processor: Any,
    conversations: Sequence[Sequence[dict]],
    max_new_tokens: int = 32,
    batch_size: int = 16,
    device: Any = "cpu",
    synced_gpus: bool = False,
) -> dict:
    """Greedy-generate each conversation's last (assistant) turn from the turns before it, images included.

    Args:
        model: a Hugging Face image-text-to-text model.
        processor: its processor (chat template, tokenizer, image processor).
        conversations: OpenAI-style messages whose image parts (``{"type": "image", "image": PIL image}``)
            hold decoded images; the last message is the reference answer.
        max_new_tokens, batch_size: generation limits; prompts are left-padded in batches.
        device: where the model is.
        synced_gpus: True when the model is sharded and every rank generates the same samples.

    Returns:
        ``{"exact_match": 0..1, "predictions": [{"prompt", "reference", "prediction", "match"}]}``.
        A prediction is the generated text up to the first special token (the end of the turn,
        whatever the template calls it), stripped; it matches when it equals the stripped reference.
    """
    tokenizer = processor.tokenizer
    stop_ids = sorted(set(tokenizer.all_special_ids))
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    was_training, padding_side = model.training, tokenizer.padding_side
    model.eval()
    tokenizer.padding_side = "left"
    records = []
    try:
        for start in range(0, len(conversations), batch_size):
            chunk = conversations[start : start + batch_size]
            prompts = [list(conversation[:-1]) for conversation in chunk]
            texts = processor.apply_chat_template(prompts, tokenize=False, add_generation_prompt=True)
            images = [_images_of(prompt) for prompt in prompts]
            bos = tokenizer.bos_token
            inputs = processor(
                text=texts,
                images=images if any(images) else None,
                padding=True,
                return_tensors="pt",
                add_special_tokens=not (bos and all(text.startswith(bos) for text in texts)),
            )
            inputs = to_device(dict(inputs), device)
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stop_ids,
                pad_token_id=pad_id,
                synced_gpus=synced_gpus,
            )
            width = inputs["input_ids"].shape[1]
            for conversation, text, generated in zip(chunk, texts, output[:, width:].tolist(), strict=True):
                ends = [i for i, token in enumerate(generated) if token in stop_ids]
                prediction = tokenizer.decode(generated[: ends[0] if ends else None]).strip()
                expected = _text_of(conversation[-1]).strip()
                records.append(
                    {"prompt": text, "reference": expected, "prediction": prediction, "match": prediction == expected}
                )
    finally:
        tokenizer.padding_side = padding_side
        model.train(was_training)
    score = sum(r["match"] for r in records) / len(records) if records else float("nan")
    return {"exact_match": score, "predictions": records}
