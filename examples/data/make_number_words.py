"""Write the shipped tiny SFT task: spell out a number 0-999 in English words.

    python examples/data/make_number_words.py            # writes number_words/{train,validation}.jsonl

Every number appears once; a fixed, seeded 10% is held out for validation, so exact match
on it measures whether the model learned the rule, not the table. Each line is
{"question": "Write 342 in words.", "answer": "three hundred forty-two"}.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
        "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]  # fmt: skip
TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def in_words(n: int) -> str:
    """Return ``n`` (0..999) in words: 342 -> 'three hundred forty-two'."""
    hundreds, rest = divmod(n, 100)
    parts = [f"{ONES[hundreds]} hundred"] if hundreds else []
    if rest or not hundreds:
        tens, ones = divmod(rest, 10)
        parts.append(ONES[rest] if rest < 20 else TENS[tens] + (f"-{ONES[ones]}" if ones else ""))
    return " ".join(parts)


def main(out: Path = Path(__file__).parent / "number_words", held_out: float = 0.1, seed: int = 0) -> None:
    """Write train.jsonl and validation.jsonl under ``out``."""
    numbers = list(range(1000))
    random.Random(seed).shuffle(numbers)
    cut = int(len(numbers) * held_out)
    out.mkdir(parents=True, exist_ok=True)
    for name, subset in (("validation", numbers[:cut]), ("train", numbers[cut:])):
        with (out / f"{name}.jsonl").open("w") as handle:
            for n in subset:
                handle.write(json.dumps({"question": f"Write {n} in words.", "answer": in_words(n)}) + "\n")


if __name__ == "__main__":
    main()
