"""Validation loss over every label token, and greedy-generation exact match."""

from __future__ import annotations

import math

import torch
from training_test_helpers import random_batch

from automodel.training import MaskedCrossEntropy, generation_exact_match, validation_loss


def test_validation_loss_is_the_mean_over_all_label_tokens_and_restores_train_mode(model):
    batches = [random_batch([9, 3], seed=5), random_batch([4], seed=6)]
    model.train()
    result = validation_loss(model, batches, MaskedCrossEntropy())
    assert model.training
    with torch.no_grad():
        total = sum(
            MaskedCrossEntropy()(
                model(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits, b["labels"], 1
            )
            for b in batches
        )
    tokens = (9 - 2) + (3 - 2) + (4 - 2)
    assert result["val_tokens"] == tokens
    assert math.isclose(result["val_loss"], float(total) / tokens, rel_tol=1e-5)
    assert math.isclose(result["val_ppl"], math.exp(result["val_loss"]), rel_tol=1e-6)


def _sample(tokenizer, prompt: str, answer_ids: list[int]) -> dict:
    tokens = tokenizer(prompt, add_special_tokens=False)["input_ids"] + answer_ids
    return {"input_ids": tokens[:-1], "labels": tokens[1:], "prompt_length": len(tokens) - len(answer_ids)}


def _greedy(model, tokenizer, prompt: str, n: int) -> list[int]:
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    out = model.generate(input_ids=ids, max_new_tokens=n, do_sample=False, pad_token_id=0, eos_token_id=2)
    return out[0, ids.shape[1] :].tolist()


def test_exact_match_is_one_when_references_are_the_greedy_answers_and_batching_changes_nothing(model, tokenizer):
    prompts = ["a b c", "one plus two is", "x", "d e f g h"]
    samples = [_sample(tokenizer, p, [*_greedy(model, tokenizer, p, 4), 2]) for p in prompts]
    batched = generation_exact_match(model, tokenizer, samples, max_new_tokens=4, batch_size=4)
    single = generation_exact_match(model, tokenizer, samples, max_new_tokens=4, batch_size=1)
    assert batched["exact_match"] == 1.0
    assert [p["prediction"] for p in batched["predictions"]] == [p["prediction"] for p in single["predictions"]]


def test_exact_match_counts_wrong_answers(model, tokenizer):
    prompt = "a b c"
    greedy = _greedy(model, tokenizer, prompt, 3)
    wrong = [t + 1 if t < 40 else 5 for t in greedy]
    samples = [_sample(tokenizer, prompt, [*greedy, 2]), _sample(tokenizer, prompt, [*wrong, 2])]
    result = generation_exact_match(model, tokenizer, samples, max_new_tokens=3)
    assert result["exact_match"] == 0.5
    assert [p["match"] for p in result["predictions"]] == [True, False]
