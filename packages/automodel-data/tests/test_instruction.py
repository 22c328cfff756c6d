"""ColumnMappedTextInstructionDataset and make_squad_dataset: prompt, answer, masks, limits, mistakes."""

from __future__ import annotations

import logging
from pathlib import Path

import datasets
import pytest
from data_test_helpers import label_runs, write_jsonl

from automodel.data import DataError
from automodel.data.llm import ColumnMappedTextInstructionDataset, format_prompt, make_squad_dataset

MAPPING = {"context": "passage", "question": "query", "answer": "reply"}
ROWS = [
    {"passage": "The capital of France is Paris.", "query": "What is the capital of France?", "reply": "Paris"},
    {"passage": "", "query": "What is the weather like today?", "reply": "It is sunny and warm."},
    {"passage": "One two three.", "query": "What comes after two?", "reply": "three"},
]
SQUAD_ROWS = [
    {
        "id": "1",
        "title": "France",
        "context": "The capital of France is Paris.",
        "question": "What is the capital of France?",
        "answers": {"text": ["Paris", "paris"], "answer_start": [25, 25]},
    },
    {
        "id": "2",
        "title": "Weather",
        "context": "It is sunny and warm today.",
        "question": "What is the weather like today?",
        "answers": {"text": ["sunny and warm"], "answer_start": [6]},
    },
]


@pytest.fixture
def qa_file(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "qa.jsonl", ROWS)


def test_a_sample_is_prompt_then_answer_then_eos_with_loss_on_the_answer(tokenizer, qa_file: Path) -> None:
    dataset = ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer)
    item = dataset[0]
    tokens = [*item["input_ids"], item["labels"][-1]]
    assert tokenizer.decode(tokens) == (
        "Context: The capital of France is Paris.\nQuestion: What is the capital of France?\nAnswer: Paris<|endoftext|>"
    )
    assert [tokenizer.decode(run) for run in label_runs(item["labels"])] == [" Paris<|endoftext|>"]
    assert len(item["input_ids"]) == len(item["labels"])


def test_labels_are_pre_shifted_and_prompt_length_splits_prompt_from_answer(tokenizer, qa_file: Path) -> None:
    item = ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer)[2]
    tokens = [*item["input_ids"], item["labels"][-1]]
    for i, label in enumerate(item["labels"]):
        assert label in (-100, tokens[i + 1])
    assert tokenizer.decode(tokens[: item["prompt_length"]]) == format_prompt("One two three.", "What comes after two?")
    assert tokenizer.decode(tokens[item["prompt_length"] :]) == " three<|endoftext|>"
    first_target = next(i for i, label in enumerate(item["labels"]) if label != -100)
    assert first_target == item["prompt_length"] - 1


def test_an_empty_or_absent_context_leaves_the_context_line_out(tokenizer, qa_file: Path) -> None:
    without_context = ColumnMappedTextInstructionDataset(qa_file, {"question": "query", "answer": "reply"}, tokenizer)
    item = without_context[0]
    prompt = tokenizer.decode(item["input_ids"][: item["prompt_length"]])
    assert prompt == "Question: What is the capital of France?\nAnswer:"
    blank = ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer)[1]
    assert tokenizer.decode(blank["input_ids"][: blank["prompt_length"]]).startswith("Question:")


def test_without_answer_only_loss_mask_every_token_is_a_target(tokenizer, qa_file: Path) -> None:
    item = ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer, answer_only_loss_mask=False)[0]
    assert item["labels"] == [*item["input_ids"][1:], tokenizer.eos_token_id]


def test_use_chat_template_renders_a_user_and_an_assistant_turn(tokenizer, qa_file: Path) -> None:
    item = ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer, use_chat_template=True)[0]
    prompt = tokenizer.decode(item["input_ids"][: item["prompt_length"]])
    assert prompt == (
        "<|im_start|>user\nThe capital of France is Paris.\n\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    assert [tokenizer.decode(run) for run in label_runs(item["labels"])] == ["Paris<|im_end|>"]


def test_limit_dataset_samples_and_split_slicing_choose_the_rows(tokenizer, qa_file: Path) -> None:
    assert len(ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer, limit_dataset_samples=2)) == 2
    last = ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer, split="train[2:]")
    assert len(last) == 1
    assert tokenizer.decode(label_runs(last[0]["labels"])[0]) == " three<|endoftext|>"


def test_over_long_samples_are_dropped_or_truncated_and_counted(tokenizer, qa_file: Path, caplog) -> None:
    lengths = [len(item["input_ids"]) for item in ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer)]
    limit = sorted(lengths)[1]
    longer = sum(length > limit for length in lengths)
    with caplog.at_level(logging.WARNING):
        dropped = ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer, seq_length=limit)
    assert len(dropped) == len(ROWS) - longer
    assert f"dropped {longer} of 3 samples longer than seq_length={limit}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        cut = ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer, seq_length=limit, truncation="truncate")
    assert max(len(item["input_ids"]) for item in cut) == limit
    assert f"truncated {longer} of 3 samples" in caplog.text


def test_make_squad_dataset_reads_the_first_reference_answer(tokenizer, tmp_path: Path) -> None:
    squad = make_squad_dataset(tokenizer, dataset_name=write_jsonl(tmp_path / "squad.jsonl", SQUAD_ROWS))
    answers = [tokenizer.decode(label_runs(item["labels"])[0]) for item in squad]
    assert answers == [" Paris<|endoftext|>", " sunny and warm<|endoftext|>"]
    first = squad[0]
    prompt = tokenizer.decode(first["input_ids"][: first["prompt_length"]])
    assert prompt == format_prompt(SQUAD_ROWS[0]["context"], SQUAD_ROWS[0]["question"])


def test_a_mapping_to_a_missing_column_lists_the_columns(tokenizer, qa_file: Path) -> None:
    with pytest.raises(
        DataError, match=r"qa.jsonl: column_mapping.answer names column 'answer'.*passage, query, reply"
    ):
        ColumnMappedTextInstructionDataset(qa_file, {**MAPPING, "answer": "answer"}, tokenizer)


def test_a_mapping_without_question_or_with_an_unknown_role_is_a_data_error(tokenizer, qa_file: Path) -> None:
    with pytest.raises(DataError, match=r"no column for \['question'\]"):
        ColumnMappedTextInstructionDataset(qa_file, {"answer": "reply"}, tokenizer)
    with pytest.raises(DataError, match=r"unknown roles \['system'\]"):
        ColumnMappedTextInstructionDataset(qa_file, {**MAPPING, "system": "passage"}, tokenizer)


def test_squad_data_without_answers_or_a_non_text_answer_is_a_data_error(tokenizer, tmp_path: Path) -> None:
    rows = [{key: value for key, value in row.items() if key != "answers"} for row in SQUAD_ROWS]
    with pytest.raises(
        DataError, match=r"answer \('answers.text.0'\) names column 'answers'.*id, title, context, question"
    ):
        make_squad_dataset(tokenizer, dataset_name=write_jsonl(tmp_path / "no_answers.jsonl", rows))
    path = write_jsonl(tmp_path / "squad.jsonl", SQUAD_ROWS)
    with pytest.raises(DataError, match=r"row 0: column_mapping.answer gives dict .* not text"):
        ColumnMappedTextInstructionDataset(path, {"question": "question", "answer": "answers"}, tokenizer)


def test_an_empty_answer_list_names_the_row(tokenizer, tmp_path: Path) -> None:
    rows = [SQUAD_ROWS[0], {**SQUAD_ROWS[1], "answers": {"text": [], "answer_start": []}}]
    with pytest.raises(DataError, match=r"row 1: column_mapping.answer path 'answers.text.0' has no '0'"):
        make_squad_dataset(tokenizer, dataset_name=write_jsonl(tmp_path / "squad.jsonl", rows))


def test_an_empty_dataset_or_one_with_every_sample_too_long_is_a_data_error(tokenizer, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(DataError, match=r"empty.jsonl: empty file"):
        ColumnMappedTextInstructionDataset(empty, MAPPING, tokenizer)
    qa_file = write_jsonl(tmp_path / "qa.jsonl", ROWS)
    with pytest.raises(DataError, match=r"every sample is longer than seq_length=4 .*truncation: truncate"):
        ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer, seq_length=4)
    with pytest.raises(DataError, match=r"with split 'train\[3:\]'.*no data"):
        ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer, split="train[3:]")
    datasets.Dataset.from_dict({"passage": [], "query": [], "reply": []}).to_parquet(tmp_path / "none.parquet")
    with pytest.raises(DataError, match=r"none.parquet: could not be loaded with split 'train'.*no data"):
        ColumnMappedTextInstructionDataset(tmp_path / "none.parquet", MAPPING, tokenizer)


def test_bad_length_options_are_data_errors(tokenizer, qa_file: Path) -> None:
    with pytest.raises(DataError, match="truncation must be `drop` or `truncate`, not 'cut'"):
        ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer, truncation="cut")
    with pytest.raises(DataError, match="seq_length must be a positive"):
        ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer, seq_length=0)
    with pytest.raises(DataError, match="limit_dataset_samples must be a positive"):
        ColumnMappedTextInstructionDataset(qa_file, MAPPING, tokenizer, limit_dataset_samples=0)
