"""Image-text conversations: OpenAI-style messages checked and normalized, then given their images.

A normalized conversation is a list of ``{"role": str, "content": [part, ...]}`` where each
part is ``{"type": "text", "text": str}`` or ``{"type": "image", "image": value}``. Before
``with_images`` the image value is a reference (path, URL or `datasets` Image value);
after it, a decoded RGB ``PIL.Image``, which is what processors and their chat templates take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from automodel.data.errors import DataError
from automodel.data.vlm.images import open_image

MESSAGE_HINT = (
    "write each conversation as [{'role': 'user', 'content': [{'type': 'image', 'image': 'a.png'}, "
    "{'type': 'text', 'text': ...}]}, {'role': 'assistant', 'content': ...}]"
)


def normalize_conversation(messages: Any, images: list[Any] | None, *, row: int, dataset: str) -> list[dict[str, Any]]:
    """Check a row's ``messages`` and return them normalized (see the module docstring).

    Args:
        messages: a list of ``{"role", "content"}`` dicts; content is a string or a list of
            ``{"type": "text", "text"}``, ``{"type": "image", "image"}`` (also ``url`` or
            ``path`` instead of ``image``) and ``{"type": "image_url", "image_url": {"url"}}`` parts.
        images: the row's ``images`` column, or None. An image part without a value takes
            the next of these, in order.
        row: the row index, for errors.
        dataset: the dataset's name, for errors.

    Returns:
        The normalized conversation, image values still unopened.

    Raises:
        DataError: messages that are not role-tagged dicts, a part of unknown type or
            without its value, or image parts and ``images`` that do not pair up.
    """
    if not isinstance(messages, list) or not all(isinstance(m, dict) and m.get("role") for m in messages):
        raise DataError(
            f"row {row}: messages must be a list of {{role, content}} dicts, not {messages!r:.80}",
            dataset=dataset,
            hint=MESSAGE_HINT,
        )
    pending = list(images or [])
    conversation = [{"role": m["role"], "content": _parts(m.get("content"), pending, row, dataset)} for m in messages]
    if pending:
        raise DataError(
            f"row {row}: the images column holds {len(pending)} more images than the messages have image parts",
            dataset=dataset,
            hint="add an {'type': 'image'} part for every image, in order",
        )
    return conversation


def has_assistant_text(conversation: list[dict[str, Any]]) -> bool:
    """Whether some assistant turn has non-empty text, that is, something to learn from."""
    return any(
        part["type"] == "text" and part["text"]
        for message in conversation
        if message["role"] == "assistant"
        for part in message["content"]
    )


def with_images(
    conversation: list[dict[str, Any]], *, base_dir: Path | None, row: int, dataset: str
) -> list[dict[str, Any]]:
    """Return a copy of a normalized conversation with every image opened (see ``open_image`` for errors)."""
    return [
        {
            "role": message["role"],
            "content": [
                {"type": "image", "image": open_image(part["image"], base_dir=base_dir, row=row, dataset=dataset)}
                if part["type"] == "image"
                else part
                for part in message["content"]
            ],
        }
        for message in conversation
    ]


def _parts(content: Any, pending: list[Any], row: int, dataset: str) -> list[dict[str, Any]]:
    """Normalize one message's content; image parts without a value take the next of ``pending``."""
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}]
    if not isinstance(content, list):
        raise DataError(
            f"row {row}: message content must be a string or a list of parts, not {content!r:.80}",
            dataset=dataset,
            hint=MESSAGE_HINT,
        )
    return [_part(part, pending, row, dataset) for part in content]


def _part(part: Any, pending: list[Any], row: int, dataset: str) -> dict[str, Any]:
    """Normalize one content part (Arrow gives every part every key, None where it has none)."""
    kind = part.get("type") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text"), str):
        return {"type": "text", "text": part["text"]}
    if kind == "image":
        value = next((part[key] for key in ("image", "url", "path") if part.get(key) is not None), None)
        if value is None:
            if not pending:
                raise DataError(
                    f"row {row}: an image part has no image and the row has no images left to give it",
                    dataset=dataset,
                    hint="name the image in the part ({'type': 'image', 'image': 'a.png'}) or in an images column",
                )
            value = pending.pop(0)
        return {"type": "image", "image": value}
    if kind == "image_url":
        url = part.get("image_url")
        url = url.get("url") if isinstance(url, dict) else url
        if url:
            return {"type": "image", "image": url}
    raise DataError(
        f"row {row}: cannot read content part {part!r:.80}",
        dataset=dataset,
        hint="use {'type': 'text', 'text': ...}, {'type': 'image', 'image': ...} or "
        "{'type': 'image_url', 'image_url': {'url': ...}} parts",
    )
