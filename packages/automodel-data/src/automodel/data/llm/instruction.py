"""Instruction datasets: a prompt (context and question) and an answer taken from named columns."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from automodel.data.errors import DataError, dataset_label
from automodel.data.llm.chat import encode_conversation
from automodel.data.llm.rows import BATCH_ROWS, ColumnPath, load_rows
from automodel.data.llm.samples import SampleCollector, TokenizedDataset
from automodel.data.llm.tokenizer_checks import eos_token_id, require_chat_template

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

PathOrId = str | os.PathLike[str]
ROLES = ("context", "question", "answer")


def format_prompt(context: str, question: str) -> str:
    """The plain-text prompt: ``Context: {context}\\nQuestion: {question}\\nAnswer:`` (no context line when empty)."""
    question_part = f"Question: {question}\nAnswer:"
    return f"Context: {context}\n{question_part}" if context else question_part


class ColumnMappedTextInstructionDataset(TokenizedDataset):
    """Question-answer rows, tokenized as prompt then answer then EOS, loss on the answer.

    Without a chat template the text is ``format_prompt(context, question)`` followed by a
    space, the answer and the EOS token (the prompt with the tokenizer's special tokens, such
    as BOS). With ``use_chat_template=True`` it is a user turn (context, blank line, question)
    and an assistant turn rendered by the tokenizer's chat template. Items are ``input_ids``,
    pre-shifted ``labels`` and ``prompt_length``; ``input_ids[:prompt_length]`` is what a
    model is given at generation time.
    """

    def __init__(
        self,
        path_or_dataset_id: PathOrId | Sequence[PathOrId],
        column_mapping: Mapping[str, str],
        tokenizer: PreTrainedTokenizerBase,
        split: str = "train",
        seq_length: int | None = None,
        answer_only_loss_mask: bool = True,
        limit_dataset_samples: int | None = None,
        truncation: str = "drop",
        use_chat_template: bool = False,
    ) -> None:
        """Load, tokenize and check an instruction dataset.

        Args:
            path_or_dataset_id: a local data file (or list), a saved directory or a hub id.
            column_mapping: role -> column, for roles ``question`` and ``answer`` and
                optionally ``context``. A dotted path reaches inside a column
                (``answers.text.0``: the first of the ``text`` list of the ``answers`` column).
            tokenizer: a Hugging Face tokenizer with an EOS token.
            split: the split, slicing allowed (``train[:90%]``).
            seq_length: the most tokens in ``input_ids``; None for no limit.
            answer_only_loss_mask: take the loss on the answer (and EOS) only; False takes it on every token.
            limit_dataset_samples: read only this many rows.
            truncation: ``drop`` skips over-long samples, ``truncate`` cuts them to seq_length.
            use_chat_template: render prompt and answer with the tokenizer's chat template.

        Raises:
            DataError: an unknown role or missing column, a value that is not text, no
                EOS or chat template, or no sample left.
        """
        name = dataset_label(path_or_dataset_id)
        collector = SampleCollector(name, seq_length, truncation)
        _check_roles(column_mapping, name)
        if use_chat_template:
            require_chat_template(tokenizer, None, name)
        else:
            eos = eos_token_id(tokenizer, name)
        rows = load_rows(path_or_dataset_id, split, limit_dataset_samples, name)
        paths = {
            role: ColumnPath.parse(spec, rows, f"column_mapping.{role}", name) for role, spec in column_mapping.items()
        }
        index = 0
        for batch in rows.select_columns(sorted({p.column for p in paths.values()})).iter(batch_size=BATCH_ROWS):
            size = len(batch[paths["question"].column])
            texts = {
                role: [
                    path.text(batch[path.column][i], index + i, name, optional=role == "context") for i in range(size)
                ]
                for role, path in paths.items()
            }
            contexts = texts.get("context", [""] * size)
            if use_chat_template:
                encoded = [
                    _encode_chat(context, question, answer, tokenizer, name, index + i)
                    for i, (context, question, answer) in enumerate(
                        zip(contexts, texts["question"], texts["answer"], strict=True)
                    )
                ]
            else:
                encoded = _encode_plain(contexts, texts["question"], texts["answer"], tokenizer, eos)
            for tokens, mask, prompt_length in encoded:
                collector.add(tokens, mask if answer_only_loss_mask else [True] * len(tokens), prompt_length)
            index += size
        super().__init__(name, collector.finish())


def _encode_plain(
    contexts: list[str], questions: list[str], answers: list[str], tokenizer: PreTrainedTokenizerBase, eos: int
) -> list[tuple[list[int], list[bool], int]]:
    """Tokenize ``format_prompt`` (with special tokens), a space and the answer, then EOS; mask the answer and EOS."""
    prompts = tokenizer([format_prompt(c, q) for c, q in zip(contexts, questions, strict=True)])["input_ids"]
    replies = tokenizer([f" {a}" for a in answers], add_special_tokens=False)["input_ids"]
    return [
        ([*prompt, *reply, eos], [False] * len(prompt) + [True] * (len(reply) + 1), len(prompt))
        for prompt, reply in zip(prompts, replies, strict=True)
    ]


def _encode_chat(
    context: str, question: str, answer: str, tokenizer: PreTrainedTokenizerBase, dataset: str, row: int
) -> tuple[list[int], list[bool], int]:
    """Render a user turn (context, blank line, question) and an assistant turn with the tokenizer's chat template."""
    user = f"{context}\n\n{question}" if context else question
    messages = [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return encode_conversation(messages, tokenizer, dataset=dataset, row=row)


def _check_roles(column_mapping: Mapping[str, str], dataset: str) -> None:
    """Raise DataError unless the mapping names ``question`` and ``answer`` and no role beyond ``context``."""
    unknown = sorted(set(column_mapping) - set(ROLES))
    missing = [role for role in ("question", "answer") if role not in column_mapping]
    if unknown or missing:
        problem = f"unknown roles {unknown}" if unknown else f"no column for {missing}"
        raise DataError(
            f"column_mapping has {problem}",
            dataset=dataset,
            hint="map `question` and `answer` (and optionally `context`) to column names",
        )


def make_squad_dataset(
    tokenizer: PreTrainedTokenizerBase,
    dataset_name: str | os.PathLike[str] = "rajpurkar/squad",
    split: str = "train",
    seq_length: int | None = None,
    limit_dataset_samples: int | None = None,
    answer_only_loss_mask: bool = True,
    truncation: str = "drop",
    use_chat_template: bool = False,
) -> ColumnMappedTextInstructionDataset:
    """Build an instruction dataset from SQuAD-shaped data: ``context``, ``question`` and ``answers.text[0]``.

    Args:
        tokenizer: a Hugging Face tokenizer with an EOS token.
        dataset_name: the hub id, or a local file or directory with SQuAD's columns.
        split: the split, slicing allowed (``validation[:200]``).
        seq_length: the most tokens in ``input_ids``; None for no limit.
        limit_dataset_samples: read only this many rows.
        answer_only_loss_mask: take the loss on the answer (and EOS) only.
        truncation: ``drop`` or ``truncate`` over-long samples.
        use_chat_template: render prompt and answer with the tokenizer's chat template.

    Returns:
        A ``ColumnMappedTextInstructionDataset`` whose answer is the first reference answer.
    """
    return ColumnMappedTextInstructionDataset(
        dataset_name,
        {"context": "context", "question": "question", "answer": "answers.text.0"},
        tokenizer,
        split=split,
        seq_length=seq_length,
        answer_only_loss_mask=answer_only_loss_mask,
        limit_dataset_samples=limit_dataset_samples,
        truncation=truncation,
        use_chat_template=use_chat_template,
    )
