"""``python -m automodel.models.tokenizer_builder --text FILE [--text FILE ...] --out DIR [--vocab-size N]``.

Trains a tokenizer with ``build_tokenizer``: a text file holds one document per line and a
``.jsonl`` file contributes every string value of every line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from automodel.models.errors import ModelError
from automodel.models.tokenizer_training import build_tokenizer


def read_texts(files: Iterable[str | os.PathLike]) -> Iterator[str]:
    """Yield the documents in ``files``: each non-empty line of a text file, each string value of a .jsonl line.

    Args:
        files: paths; a name ending in ``.jsonl`` is read as JSON Lines (strings found at any depth
            of each line's value), any other as UTF-8 text with one document per line.

    Returns:
        An iterator of documents, file by file, in order.

    Raises:
        ModelError: when a file does not exist or a JSON line does not parse (naming file and line).
    """
    for file in map(Path, files):
        if not file.is_file():
            raise ModelError(f"text file {file} does not exist; check the path given to --text.")
        with file.open(encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                if file.suffix != ".jsonl":
                    yield line.rstrip("\n")
                    continue
                try:
                    yield from _strings(json.loads(line))
                except json.JSONDecodeError as err:
                    message = f"{file}:{number} is not valid JSON ({err.msg}); fix or remove that line."
                    raise ModelError(message) from err


def _strings(value: Any) -> Iterator[str]:
    """Yield every string inside a decoded JSON value (dict values and list items, depth first)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line: train a tokenizer on text files and save it.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 2 after printing a ``ModelError`` as one line on stderr.
    """
    parser = argparse.ArgumentParser(
        prog="python -m automodel.models.tokenizer_builder",
        description="Train a byte-level BPE tokenizer with a ChatML chat template, offline, and save it.",
    )
    parser.add_argument(
        "--text",
        action="append",
        required=True,
        metavar="FILE",
        help="a text file (one document per line) or a .jsonl file (its string values); repeatable",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="the directory to save the tokenizer in")
    parser.add_argument("--vocab-size", type=int, default=512, metavar="N", help="the largest vocabulary (default 512)")
    args = parser.parse_args(argv)
    try:
        tokenizer = build_tokenizer(read_texts(args.text), args.out, vocab_size=args.vocab_size)
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"saved a tokenizer of {len(tokenizer)} tokens to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
