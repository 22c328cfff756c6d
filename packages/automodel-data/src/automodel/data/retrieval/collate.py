"""Batches of retrieval items for bi-encoders (queries and passages apart) and cross-encoders (pairs)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from automodel.data.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def group_passages(items: list[dict[str, Any]]) -> tuple[list[str], int]:
    """Return every item's positive then negatives, item after item, and the group size (1 + negatives).

    Raises:
        DataError: items with different numbers of negatives.
    """
    sizes = {len(item["negatives"]) for item in items}
    if len(sizes) > 1:
        raise DataError(
            f"a batch mixes items with {sorted(sizes)} negatives",
            hint="give every item the same number of negatives (dataset.n_negatives)",
        )
    return [text for item in items for text in (item["positive"], *item["negatives"])], 1 + sizes.pop()


class BiEncoderCollator:
    """Tokenize queries and passages separately, each with its own prompt and length limit.

    A batch is ``query_input_ids``/``query_attention_mask`` [B, Lq],
    ``passage_input_ids``/``passage_attention_mask`` [B * G, Lp] (each query's positive then its
    negatives), ``token_type_ids`` of each when the tokenizer gives them, and ``group_size`` G.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        *,
        query_max_length: int = 64,
        passage_max_length: int = 256,
        query_prompt: str | None = None,
        passage_prompt: str | None = None,
        pad_to_multiple_of: int | None = None,
    ) -> None:
        """Keep the tokenizer and the settings; prompts are prepended to the texts as they are."""
        self.tokenizer = tokenizer
        self.query_max_length, self.passage_max_length = int(query_max_length), int(passage_max_length)
        self.query_prompt, self.passage_prompt = query_prompt or "", passage_prompt or ""
        self.pad_to_multiple_of = pad_to_multiple_of

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the batch of ``items`` (``{"query", "positive", "negatives"}`` dicts)."""
        passages, group_size = group_passages(items)
        queries = self._tokenize([self.query_prompt + item["query"] for item in items], self.query_max_length)
        passage = self._tokenize([self.passage_prompt + text for text in passages], self.passage_max_length)
        batch = {f"query_{k}": v for k, v in queries.items()}
        batch.update({f"passage_{k}": v for k, v in passage.items()})
        batch["group_size"] = group_size
        return batch

    def _tokenize(self, texts: list[str], max_length: int) -> dict[str, torch.Tensor]:
        encoded = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=max_length,
            pad_to_multiple_of=self.pad_to_multiple_of,
            return_tensors="pt",
        )
        return dict(encoded)


class CrossEncoderCollator:
    """Tokenize (query, passage) pairs for a cross-encoder: every query with its positive and negatives.

    A batch is ``input_ids``/``attention_mask`` (and ``token_type_ids``) [B * G, L], ``labels``
    [B * G] (1.0 for each group's first pair, the positive, else 0.0) and ``group_size`` G.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, *, max_length: int = 256) -> None:
        """Keep the tokenizer and the length limit of a pair."""
        self.tokenizer, self.max_length = tokenizer, int(max_length)

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        """Return the batch of ``items`` (``{"query", "positive", "negatives"}`` dicts)."""
        passages, group_size = group_passages(items)
        queries = [item["query"] for item in items for _ in range(group_size)]
        encoded = self.tokenizer(
            queries, passages, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt"
        )
        labels = torch.zeros(len(passages))
        labels[::group_size] = 1.0
        return {**dict(encoded), "labels": labels, "group_size": group_size}
