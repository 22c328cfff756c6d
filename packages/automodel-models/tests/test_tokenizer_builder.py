"""build_tokenizer and its command line: a byte-level BPE tokenizer plain transformers loads, with ChatML."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import transformers

from automodel.models import CHATML_TEMPLATE, ModelError, build_tokenizer, tiny_llama_config
from automodel.models.tokenizer_builder import main

CONVERSATION = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Paris"}}}],
    },
    {"role": "tool", "content": "18C"},
    {"role": "assistant", "content": "It is 18C."},
    {"role": "user", "content": "Thanks"},
]

RENDERED = (
    "<|im_start|>system\nYou are terse.<|im_end|>\n"
    "<|im_start|>user\nWeather in Paris?<|im_end|>\n"
    '<|im_start|>assistant\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    "<|im_end|>\n"
    "<|im_start|>tool\n18C<|im_end|>\n"
    "<|im_start|>assistant\nIt is 18C.<|im_end|>\n"
    "<|im_start|>user\nThanks<|im_end|>\n"
    "<|im_start|>assistant\n"
)


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    """The session tokenizer, loaded by plain transformers (no automodel code)."""
    return transformers.AutoTokenizer.from_pretrained(tokenizer_dir)


def test_plain_auto_tokenizer_loads_it_with_the_special_tokens_and_chat_template(tokenizer):
    assert tokenizer.eos_token == tokenizer.bos_token == "<|endoftext|>"
    assert tokenizer.pad_token == "<|pad|>"
    assert {"<|im_start|>", "<|im_end|>"} <= set(tokenizer.all_special_tokens)
    assert tokenizer.chat_template == CHATML_TEMPLATE
    assert tokenizer.model_max_length == 2048
    assert 260 < len(tokenizer) <= 300


def test_special_token_ids_match_the_tiny_llama_config(tokenizer):
    config = tiny_llama_config()
    assert tokenizer.eos_token_id == tokenizer.bos_token_id == config["eos_token_id"] == config["bos_token_id"]
    assert tokenizer.pad_token_id == config["pad_token_id"]
    assert len(tokenizer) <= config["vocab_size"]


@pytest.mark.parametrize(
    "text",
    ["The quick brown fox.", "  two  spaces\nand a newline\t", "Café 東京 🙂 and text it never saw: Ωμέγα"],
)
def test_text_round_trips_through_encode_and_decode(tokenizer, text):
    assert tokenizer.decode(tokenizer(text).input_ids) == text


def test_digits_are_one_token_each(tokenizer):
    assert tokenizer.tokenize("1000000") == list("1000000")
    assert [t for t in tokenizer.tokenize("in 2024") if t.isdigit()] == ["2", "0", "2", "4"]


def test_special_tokens_in_text_are_single_tokens_and_nothing_is_added(tokenizer):
    ids = tokenizer("<|im_start|>user\nhi<|im_end|>").input_ids
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[-1] == tokenizer.convert_tokens_to_ids("<|im_end|>")


def test_chat_template_renders_turns_a_tool_call_and_the_generation_prompt(tokenizer):
    text = tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert text == RENDERED


def test_chat_template_marks_only_assistant_turns_for_the_loss(tokenizer):
    out = tokenizer.apply_chat_template(
        CONVERSATION[:5], tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    learned = [token for token, mask in zip(out["input_ids"], out["assistant_masks"], strict=True) if mask]
    assert tokenizer.decode(learned) == (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>'
        "It is 18C.<|im_end|>"
    )


def test_chat_template_lists_tools_in_a_system_turn_and_keeps_string_arguments(tokenizer):
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    call = {"name": "get_weather", "arguments": '{"city": "Oslo"}'}
    messages = [
        {"role": "user", "content": "Oslo?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [call]},
    ]
    text = tokenizer.apply_chat_template(messages, tools=[tool], tokenize=False)
    assert text == (
        f"<|im_start|>system\n# Tools\n{json.dumps(tool)}<|im_end|>\n"
        "<|im_start|>user\nOslo?<|im_end|>\n"
        '<|im_start|>assistant\nChecking.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n'
        "</tool_call><|im_end|>\n"
    )


def test_one_string_instead_of_documents_is_refused(tmp_path):
    with pytest.raises(ModelError, match=r"not one string; wrap it in a list"):
        build_tokenizer("just one text", tmp_path)


def test_vocab_smaller_than_bytes_and_special_tokens_is_refused(tmp_path):
    with pytest.raises(ModelError, match=r"vocab_size must be an integer of at least 260 .* got 100"):
        build_tokenizer(["text"], tmp_path, vocab_size=100)


def test_extra_special_tokens_come_after_the_chat_tokens_and_are_never_split(tmp_path):
    build_tokenizer(["a photo of a cat"], tmp_path, vocab_size=270, extra_special_tokens=["<image>", "<video>"])
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert tokenizer.convert_tokens_to_ids(["<image>", "<video>"]) == [4, 5]
    assert tokenizer("a<image><image>b<video>").input_ids.count(4) == 2
    assert tokenizer.decode(tokenizer("x<image>y").input_ids, skip_special_tokens=True) == "xy"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("<image>", r"not one string; write \['<image>'\]"),
        (["<image>", "<image>"], r"extra special token '<image>' is empty, not a string, or already a special token"),
        (["<|pad|>"], r"extra special token '<\|pad\|>' is empty"),
    ],
)
def test_extra_special_tokens_that_are_one_string_or_repeat_a_special_token_are_refused(tmp_path, extra, expected):
    with pytest.raises(ModelError, match=expected):
        build_tokenizer(["text"], tmp_path, extra_special_tokens=extra)


def test_command_line_trains_on_text_and_jsonl_files(tmp_path):
    (tmp_path / "a.txt").write_text("hello world\n\n12 apples\n", encoding="utf-8")
    rows = [{"messages": [{"role": "user", "content": "zebra zebra"}], "id": 3}]
    (tmp_path / "b.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n", encoding="utf-8")
    out = tmp_path / "tok"
    command = [sys.executable, "-m", "automodel.models.tokenizer_builder", "--out", str(out), "--vocab-size", "270"]
    result = subprocess.run(
        [*command, "--text", str(tmp_path / "a.txt"), "--text", str(tmp_path / "b.jsonl")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert f"to {out}" in result.stdout
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    assert "Ġzebra" in tokenizer.get_vocab() or "zebra" in tokenizer.get_vocab()
    assert tokenizer.decode(tokenizer("user zebra 12").input_ids) == "user zebra 12"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "text file {missing} does not exist; check the path given to --text."),
        ('{"text": "fine"}\n{broken\n', "{path}:2 is not valid JSON"),
    ],
)
def test_command_line_reports_bad_text_files_in_one_line_with_status_2(tmp_path, capsys, content, expected):
    path = tmp_path / "data.jsonl"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    status = main(["--text", str(path), "--out", str(tmp_path / "tok")])
    error = capsys.readouterr().err
    assert status == 2
    assert expected.format(missing=path, path=path) in error
    assert error.count("\n") == 1
    assert not (tmp_path / "tok").exists()
