"""``python -m automodel.models.vlm_builder --out DIR [--text FILE ...] [--image-size N] [--seed N]``.

Writes a tiny Llava and its processor with ``build_tiny_vlm``; the tokenizer learns its merges
from the ``--text`` files, read as ``python -m automodel.models.tokenizer_builder`` reads them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from automodel.models.errors import ModelError
from automodel.models.tiny_vlm import build_tiny_vlm
from automodel.models.tokenizer_builder import read_texts


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line: write a tiny vision-language model and its processor.

    Args:
        argv: the arguments after the program name (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0, or 2 after printing a ``ModelError`` as one line on stderr.
    """
    parser = argparse.ArgumentParser(
        prog="python -m automodel.models.vlm_builder",
        description="Write a tiny Llava model (CLIP vision tower, Llama text model) and its processor, offline.",
    )
    parser.add_argument("--out", required=True, metavar="DIR", help="the directory to write")
    parser.add_argument(
        "--text",
        action="append",
        metavar="FILE",
        help="a text file (one document per line) or a .jsonl file (its string values) for the tokenizer; repeatable",
    )
    parser.add_argument("--image-size", type=int, default=32, metavar="N", help="image side in pixels (default 32)")
    parser.add_argument("--seed", type=int, default=0, metavar="N", help="the seed of the initial weights (default 0)")
    args = parser.parse_args(argv)
    try:
        texts = read_texts(args.text) if args.text else None
        build_tiny_vlm(args.out, tokenizer_texts=texts, image_size=args.image_size, seed=args.seed)
    except ModelError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"saved a tiny vision-language model and its processor to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
