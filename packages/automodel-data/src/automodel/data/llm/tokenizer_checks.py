"""What the LLM datasets need from a tokenizer, checked with a message naming the dataset."""

from __future__ import annotations

from typing import TYPE_CHECKING

from automodel.data.errors import DataError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase


def eos_token_id(tokenizer: PreTrainedTokenizerBase, dataset: str) -> int:
    """Return the tokenizer's EOS id, or raise DataError when it has none."""
    if tokenizer.eos_token_id is None:
        raise DataError(
            "the tokenizer has no eos_token, which ends every answer and document",
            dataset=dataset,
            hint="use a tokenizer with an eos_token or set tokenizer.eos_token",
        )
    return tokenizer.eos_token_id


def require_chat_template(tokenizer: PreTrainedTokenizerBase, chat_template: str | None, dataset: str) -> None:
    """Raise DataError when neither ``chat_template`` nor the tokenizer provides a chat template."""
    if chat_template is None and not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "the tokenizer has no chat template to render conversations with",
            dataset=dataset,
            hint="pass chat_template= (a Jinja template string) or use a tokenizer that has one",
        )
