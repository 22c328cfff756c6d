"""Write the shipped tiny pre-training corpus: counting runs spelled out in words.

    python examples/data/make_counting_corpus.py       # writes counting/{train,validation}.jsonl

Each line is {"text": "Counting from 17 to 21: seventeen, eighteen, nineteen, twenty, twenty-one."};
the structure (what follows what) is learnable by a tiny model in a few hundred steps.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from make_number_words import in_words


def document(start: int, length: int) -> str:
    """Return one counting run from ``start`` of ``length`` numbers."""
    end = min(999, start + length - 1)
    words = ", ".join(in_words(n) for n in range(start, end + 1))
    return f"Counting from {start} to {end}: {words}."


def main(out: Path = Path(__file__).parent / "counting", documents: int = 2000, seed: int = 0) -> None:
    """Write ``documents`` training runs and a tenth as many validation runs under ``out``."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", documents), ("validation", documents // 10)):
        with (out / f"{name}.jsonl").open("w") as handle:
            for _ in range(count):
                handle.write(json.dumps({"text": document(rng.randrange(1000), rng.randint(3, 12))}) + "\n")


if __name__ == "__main__":
    main()
