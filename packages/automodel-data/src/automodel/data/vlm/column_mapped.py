"""Image-question-answer rows as conversations: a user turn (image and question), an assistant turn (answer)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from automodel.data.errors import DataError, dataset_label
from automodel.data.llm.rows import require_column
from automodel.data.vlm.chat import ImageTextChatDataset

if TYPE_CHECKING:
    import datasets

if TYPE_CHECKING:
    from transformers import ProcessorMixin

PathOrId = str | os.PathLike[str]
ROLES = ("image", "question", "answer")
CORD_V2_PROMPT = "Read this receipt and write its contents as JSON."


class ColumnMappedImageTextDataset(ImageTextChatDataset):
    """Rows with an image column, a question column (or a fixed ``prompt``) and an answer column.

    Each row becomes ``[user: image, question], [assistant: answer]``; items and
    everything else are as in ``ImageTextChatDataset``. The image column holds paths
    (relative to the data file's folder or ``image_root``), http(s) URLs or `datasets`
    Image values.
    """

    def __init__(
        self,
        path_or_dataset_id: PathOrId | Sequence[PathOrId],
        split: str = "train",
        *,
        column_mapping: Mapping[str, str],
        prompt: str | None = None,
        processor: ProcessorMixin | None = None,
        image_root: PathOrId | None = None,
        max_length: int | None = None,
        skip_bad_samples: bool = False,
        limit_dataset_samples: int | None = None,
    ) -> None:
        """Load the rows and check every sample and image.

        Args:
            path_or_dataset_id: a local data file (or list), a saved directory or a hub id.
            split: the split, slicing allowed (``train[:90%]``).
            column_mapping: role -> column for roles ``image``, ``answer`` and, unless
                ``prompt`` is given, ``question``.
            prompt: the question text of every row, when there is no question column.
            processor: a Hugging Face processor; needed only to count tokens for ``max_length``.
            image_root: the folder relative image paths start from.
            max_length: drop samples with more than this many tokens after processing.
            skip_bad_samples: skip rows with a missing or unreadable image instead of raising.
            limit_dataset_samples: read only this many rows.

        Raises:
            DataError: an unknown role, a missing column (naming the columns there are), a
                value that is not text, a bad image (unless skipped), or no sample left.
        """
        self.column_mapping = dict(column_mapping)
        self.prompt = prompt
        _check_roles(self.column_mapping, prompt, dataset_label(path_or_dataset_id))
        super().__init__(
            path_or_dataset_id,
            split,
            processor=processor,
            image_root=image_root,
            max_length=max_length,
            skip_bad_samples=skip_bad_samples,
            limit_dataset_samples=limit_dataset_samples,
        )

    def _columns(self, rows: datasets.Dataset) -> list[str]:
        """Check that every mapped column exists and return them."""
        for role, column in self.column_mapping.items():
            require_column(rows, column, f"column_mapping.{role}", self.name)
        return sorted(set(self.column_mapping.values()))

    def _conversation(self, row: dict[str, Any], index: int) -> list[dict[str, Any]]:
        """Build ``[user: image, question], [assistant: answer]`` from one row."""
        image = row[self.column_mapping["image"]]
        if image is None:
            raise DataError(
                f"row {index}: column {self.column_mapping['image']!r} has no image",
                dataset=self.name,
                hint="fill in the image or leave the row out",
            )
        question = self._text(row, "question", index) if "question" in self.column_mapping else self.prompt
        user = [{"type": "image", "image": image}, {"type": "text", "text": question}]
        answer = [{"type": "text", "text": self._answer_text(row[self.column_mapping["answer"]], index)}]
        return [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]

    def _answer_text(self, value: Any, index: int) -> str:
        """The assistant's text for an answer-column value (the value itself, which must be text)."""
        return self._checked_text(value, "answer", index)

    def _text(self, row: dict[str, Any], role: str, index: int) -> str:
        """The text in the column mapped to ``role``."""
        return self._checked_text(row[self.column_mapping[role]], role, index)

    def _checked_text(self, value: Any, role: str, index: int) -> str:
        """Return ``value`` when it is a string; else raise DataError naming the row and column."""
        if not isinstance(value, str):
            raise DataError(
                f"row {index}: column {self.column_mapping[role]!r} (column_mapping.{role}) gives "
                f"{type(value).__name__} {value!r:.60}, not text",
                dataset=self.name,
                hint="map a column of strings",
            )
        return value


class _CordV2Dataset(ColumnMappedImageTextDataset):
    """CORD-v2 receipts: the answer is the ``gt_parse`` of the ``ground_truth`` JSON, written as compact JSON."""

    def _answer_text(self, value: Any, index: int) -> str:
        """Render ``json.loads(value)["gt_parse"]`` as JSON text, keys in the dataset's order."""
        try:
            parse = json.loads(self._checked_text(value, "answer", index))["gt_parse"]
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise DataError(
                f"row {index}: column {self.column_mapping['answer']!r} is not CORD ground truth with a gt_parse",
                dataset=self.name,
                hint='each value must be a JSON object such as {"gt_parse": {...}}',
            ) from error
        return json.dumps(parse, ensure_ascii=False)


def make_cord_v2_dataset(
    split: str = "train",
    *,
    processor: ProcessorMixin | None = None,
    dataset_name: PathOrId = "naver-clova-ix/cord-v2",
    prompt: str = CORD_V2_PROMPT,
    max_length: int | None = None,
    skip_bad_samples: bool = False,
    limit_dataset_samples: int | None = None,
) -> ColumnMappedImageTextDataset:
    """Build the CORD-v2 receipt-parsing dataset: a receipt image and ``prompt``, answered with its parse.

    Args:
        split: ``train``, ``validation`` or ``test``, slicing allowed.
        processor: a Hugging Face processor; needed only to count tokens for ``max_length``.
        dataset_name: the hub id, or local data with CORD-v2's ``image`` and ``ground_truth`` columns.
        prompt: the user's text beside each image.
        max_length: drop samples with more than this many tokens after processing.
        skip_bad_samples: skip rows with a missing or unreadable image instead of raising.
        limit_dataset_samples: read only this many rows.

    Returns:
        A ``ColumnMappedImageTextDataset`` whose answers are the ``gt_parse`` of each row's
        ``ground_truth`` written as compact JSON.
    """
    return _CordV2Dataset(
        dataset_name,
        split,
        column_mapping={"image": "image", "answer": "ground_truth"},
        prompt=prompt,
        processor=processor,
        max_length=max_length,
        skip_bad_samples=skip_bad_samples,
        limit_dataset_samples=limit_dataset_samples,
    )


def _check_roles(column_mapping: Mapping[str, str], prompt: str | None, dataset: str) -> None:
    """Raise DataError unless the mapping has ``image`` and ``answer`` and one of ``question`` and ``prompt``."""
    unknown = sorted(set(column_mapping) - set(ROLES))
    missing = [role for role in ("image", "answer") if role not in column_mapping]
    if unknown or missing:
        problem = f"unknown roles {unknown}" if unknown else f"no column for {missing}"
        raise DataError(
            f"column_mapping has {problem}",
            dataset=dataset,
            hint="map `image` and `answer` (and `question`, or pass prompt=) to column names",
        )
    if ("question" in column_mapping) == (prompt is not None):
        raise DataError(
            "give the question as column_mapping.question or as prompt=, exactly one of them",
            dataset=dataset,
            hint="map `question` to a column, or pass prompt= the text to ask beside every image",
        )
