"""ChatDataset: loss on assistant turns (with their end-of-turn token) only, tool calls kept, prompt_length."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import pytest
from data_test_helpers import CHATML_TEMPLATE, label_runs, write_jsonl

from automodel.data import DataError
from automodel.data.llm import ChatDataset

WEATHER_CALL = {"type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
CONVERSATIONS = [
    [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Hello!"},
        {"role": "assistant", "content": "How can I help you?"},
        {"role": "user", "content": "What is the weather like today?"},
        {"role": "assistant", "content": "It is sunny and warm."},
    ],
    [
        {"role": "user", "content": "What is the weather like in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [WEATHER_CALL]},
        {"role": "tool", "content": "21 degrees"},
        {"role": "assistant", "content": "It is 21 degrees in Paris."},
    ],
]


@pytest.fixture
def chat_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "chat.jsonl", [{"messages": m} for m in CONVERSATIONS])


def _tokens(item: dict) -> list[int]:
    return [*item["input_ids"], item["labels"][-1]]


def test_only_assistant_turns_and_their_end_of_turn_token_are_targets(tokenizer, chat_file: Path) -> None:
    item = ChatDataset(chat_file, tokenizer)[0]
    assert [tokenizer.decode(run) for run in label_runs(item["labels"])] == [
        "How can I help you?<|im_end|>",
        "It is sunny and warm.<|im_end|>",
    ]
    tokens = _tokens(item)
    targets = [i for i, label in enumerate(item["labels"]) if label != -100]
    assert all(item["labels"][i] == tokens[i + 1] for i in targets)
    im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ends = [i for i in range(len(tokens) - 1) if tokens[i + 1] == im_end]
    assert [i in targets for i in ends] == [False, False, True, False, True]  # system and user ends are not targets


def test_the_text_is_the_chat_template_rendering_up_to_the_last_assistant_turn(tokenizer, chat_file: Path) -> None:
    item = ChatDataset(chat_file, tokenizer)[0]
    rendered = tokenizer.apply_chat_template(CONVERSATIONS[0], tokenize=False)
    assert tokenizer.decode(_tokens(item)) == rendered.rstrip("\n")


def test_tool_calls_are_targets_and_tool_results_are_not(tokenizer, chat_file: Path) -> None:
    item = ChatDataset(chat_file, tokenizer)[1]
    assert [tokenizer.decode(run) for run in label_runs(item["labels"])] == [
        '<tool_call>get_weather {"city": "Paris"}</tool_call><|im_end|>',
        "It is 21 degrees in Paris.<|im_end|>",
    ]
    assert "<|im_start|>tool\n21 degrees<|im_end|>" in tokenizer.decode(item["input_ids"])


def test_prompt_length_ends_where_the_last_assistant_turn_begins(tokenizer, chat_file: Path) -> None:
    for item, messages in zip(ChatDataset(chat_file, tokenizer), CONVERSATIONS, strict=True):
        tokens = _tokens(item)
        generation_prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
        assert tokenizer.decode(tokens[: item["prompt_length"]]) == generation_prompt
        assert tokenizer.decode(tokens[item["prompt_length"] :]) == messages[-1]["content"] + "<|im_end|>"


def test_a_tools_column_is_passed_to_the_template(tokenizer, tmp_path: Path) -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "description": "Weather in a city."}}]
    path = write_jsonl(tmp_path / "tools.jsonl", [{"messages": CONVERSATIONS[1], "tools": tools}])
    item = ChatDataset(path, tokenizer)[0]
    assert tokenizer.decode(item["input_ids"]).startswith("<|im_start|>tools\nget_weather\n<|im_end|>\n")


def test_chat_template_argument_serves_a_tokenizer_without_one(tokenizer, chat_file: Path) -> None:
    plain = copy.deepcopy(tokenizer)
    plain.chat_template = None
    with pytest.raises(DataError, match=r"chat.jsonl: the tokenizer has no chat template.*chat_template="):
        ChatDataset(chat_file, plain)
    item = ChatDataset(chat_file, plain, chat_template=CHATML_TEMPLATE)[0]
    assert item == ChatDataset(chat_file, tokenizer)[0]


def test_over_long_conversations_are_dropped_or_truncated(tokenizer, chat_file: Path, caplog) -> None:
    lengths = [len(item["input_ids"]) for item in ChatDataset(chat_file, tokenizer)]
    limit = min(lengths)
    with caplog.at_level(logging.WARNING):
        assert len(ChatDataset(chat_file, tokenizer, seq_length=limit)) == 1
    assert f"dropped 1 of 2 samples longer than seq_length={limit}" in caplog.text
    cut = ChatDataset(chat_file, tokenizer, seq_length=limit - 5, truncation="truncate")
    assert [len(item["input_ids"]) for item in cut] == [limit - 5, limit - 5]


def test_rows_without_an_assistant_turn_are_dropped_and_counted(tokenizer, tmp_path: Path, caplog) -> None:
    rows = [{"messages": CONVERSATIONS[0]}, {"messages": CONVERSATIONS[0][:2]}]
    with caplog.at_level(logging.WARNING):
        assert len(ChatDataset(write_jsonl(tmp_path / "chat.jsonl", rows), tokenizer)) == 1
    assert "dropped 1 samples with no token to learn from" in caplog.text


def test_a_dataset_with_no_assistant_turn_at_all_is_a_data_error(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "users.jsonl", [{"messages": CONVERSATIONS[0][:2]}] * 3)
    with pytest.raises(DataError, match=r"users.jsonl: every label is -100"):
        ChatDataset(path, tokenizer)


def test_a_dataset_without_a_messages_column_lists_its_columns(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "wrong.jsonl", [{"conversation": "hi", "id": 1}])
    with pytest.raises(DataError, match=r"wrong.jsonl: .*'messages'.*its columns are conversation, id"):
        ChatDataset(path, tokenizer)


def test_messages_that_are_not_role_tagged_dicts_name_the_row(tokenizer, tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "text.jsonl", [{"messages": CONVERSATIONS[0]}, {"messages": None}])
    with pytest.raises(DataError, match=r"row 1: messages must be a list of \{role, content\} dicts"):
        ChatDataset(path, tokenizer)


def test_a_template_that_renders_earlier_turns_differently_is_a_data_error(tokenizer, chat_file: Path) -> None:
    # The generation prompt opens a thinking block that the rendered conversation leaves out.
    thinking = CHATML_TEMPLATE.replace("'<|im_start|>assistant\\n'", "'<|im_start|>assistant\\n<think>'")
    with pytest.raises(DataError, match=r"row 0: the chat template renders turn 2 differently.*chat_template="):
        ChatDataset(chat_file, tokenizer, chat_template=thinking)
