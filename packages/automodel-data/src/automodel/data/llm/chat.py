"""Chat datasets: OpenAI-style ``messages`` with the loss on assistant turns only."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from automodel.data.errors import DataError, dataset_label
from automodel.data.llm.rows import BATCH_ROWS, load_rows, require_column
from automodel.data.llm.samples import SampleCollector, TokenizedDataset
from automodel.data.llm.tokenizer_checks import require_chat_template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PathOrId = str | os.PathLike[str]


def encode_conversation(
    messages: list[dict[str, Any]],
    tokenizer: PreTrainedTokenizerBase,
    *,
    dataset: str,
    row: int,
    tools: list[dict[str, Any]] | None = None,
    chat_template: str | None = None,
) -> tuple[list[int], list[bool], int]:
    """Tokenize a conversation with its chat template and mark the assistant turns.

    Each assistant turn is located by rendering prefixes of the conversation: the turn
    starts where ``messages[:k]`` rendered with the generation prompt ends, and ends where
    ``messages[: k + 1]`` ends, less trailing whitespace, so the end-of-turn token (such as
    ``<|im_end|>``) is a target and the newline after it is not. Text after the last
    assistant turn is left out.

    Args:
        messages: ``{"role", "content"}`` dicts; assistant ``tool_calls`` and ``tool``
            messages are passed to the template as they are.
        tokenizer: a Hugging Face tokenizer.
        dataset: the dataset's name, for errors.
        row: the row index, for errors.
        tools: tool definitions for the template, or None.
        chat_template: a Jinja template to use instead of the tokenizer's.

    Returns:
        ``(tokens, mask, prompt_length)``: ``mask[j]`` is true for tokens of assistant turns,
        ``prompt_length`` counts the tokens before the last assistant turn's content. All
        three are empty (``[], [], 0``) when the conversation has no assistant turn.

    Raises:
        DataError: when the template renders a prefix differently from the start of the
            whole conversation, so turns cannot be located.
    """

    def render(part: list[dict[str, Any]], add_generation_prompt: bool = False) -> str:
        return tokenizer.apply_chat_template(
            part,
            tools=tools,
            chat_template=chat_template,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )

    full = render(messages)
    cuts = [0]
    for k, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        prompt, turn = render(messages[:k], add_generation_prompt=True), render(messages[: k + 1])
        if not (turn.startswith(prompt) and full.startswith(turn) and len(prompt) >= cuts[-1]):
            raise DataError(
                f"row {row}: the chat template renders turn {k} differently once later turns follow, "
                "so the assistant turns cannot be located",
                dataset=dataset,
                hint="pass chat_template= a template whose rendering of a conversation begins with "
                "the rendering of its first turns",
            )
        cuts += [len(prompt), max(len(prompt), len(turn.rstrip()))]
    if len(cuts) == 1:
        return [], [], 0
    pieces = [full[start:end] for start, end in itertools.pairwise(cuts)]
    encoded = tokenizer(pieces, add_special_tokens=False)["input_ids"]
    tokens: list[int] = []
    mask: list[bool] = []
    for index, ids in enumerate(encoded):
        tokens += ids
        mask += [index % 2 == 1] * len(ids)  # pieces alternate: before a turn, the assistant turn
    return tokens, mask, len(tokens) - len(encoded[-1])


def _drop_nulls(value: Any) -> Any:
    """Remove None-valued keys, recursively: Arrow gives every message every key any message has."""
    if isinstance(value, dict):
        return {key: _drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_drop_nulls(item) for item in value]
    return value


class ChatDataset(TokenizedDataset):
    """Conversations in a ``messages`` column, tokenized with a chat template, loss on assistant turns.

    Each row's ``messages`` is a list of ``{"role", "content"}`` dicts (system, user,
    assistant, tool; assistant ``tool_calls`` are kept). A ``tools`` column, when present, is
    passed to the template. Items are ``input_ids``, pre-shifted ``labels`` (-100 outside
    assistant turns; each turn's end-of-turn token is a target) and ``prompt_length`` (tokens
    before the last assistant turn's content). Rows without an assistant turn are dropped.
    """

    def __init__(
        self,
        path_or_dataset_id: PathOrId | Sequence[PathOrId],
        tokenizer: PreTrainedTokenizerBase,
        split: str = "train",
        seq_length: int | None = None,
        chat_template: str | None = None,
        limit_dataset_samples: int | None = None,
        truncation: str = "drop",
    ) -> None:
        """Load, tokenize and check a chat dataset.

        Args:
            path_or_dataset_id: a local data file (or list), a saved directory or a hub id.
            tokenizer: a Hugging Face tokenizer with a chat template (or pass ``chat_template``).
            split: the split, slicing allowed (``train[:90%]``).
            seq_length: the most tokens in ``input_ids``; None for no limit.
            chat_template: a Jinja template used instead of the tokenizer's.
            limit_dataset_samples: read only this many rows.
            truncation: ``drop`` skips over-long conversations, ``truncate`` cuts them to seq_length.

        Raises:
            DataError: no chat template, no ``messages`` column, malformed messages, or no
                sample left to learn from.
        """
        name = dataset_label(path_or_dataset_id)
        collector = SampleCollector(name, seq_length, truncation)
        require_chat_template(tokenizer, chat_template, name)
        rows = load_rows(path_or_dataset_id, split, limit_dataset_samples, name)
        require_column(rows, "messages", "ChatDataset", name)
        columns = ["messages", "tools"] if "tools" in rows.column_names else ["messages"]
        index = 0
        for batch in rows.select_columns(columns).iter(batch_size=BATCH_ROWS):
            for position, messages in enumerate(batch["messages"]):
                tools = batch["tools"][position] if "tools" in batch else None
                encoded = encode_conversation(
                    _checked_messages(messages, index, name),
                    tokenizer,
                    dataset=name,
                    row=index,
                    tools=_drop_nulls(tools),
                    chat_template=chat_template,
                )
                collector.add(*encoded)
                index += 1
        super().__init__(name, collector.finish())


def _checked_messages(messages: Any, row: int, dataset: str) -> list[dict[str, Any]]:
    """Return a row's messages without null keys, or raise DataError when they are not role-tagged dicts."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) and m.get("role") for m in messages):
        raise DataError(
            f"row {row}: messages must be a list of {{role, content}} dicts, not {messages!r:.80}",
            dataset=dataset,
            hint="write each conversation as [{'role': 'user', 'content': ...}, {'role': 'assistant', ...}]",
        )
    return _drop_nulls(messages)
