"""Write the shipped tiny visual question task: name the colour of the one shape in a picture.

    python examples/data/make_vlm_shapes.py    # writes vlm_shapes/{train,validation}.jsonl and vlm_shapes/images/

Each 32x32 PNG shows one filled square, circle or triangle of a random size and position on a
white background, in one of six colours (red, green, blue, yellow, purple, orange). The
question is always the same, so the answer is only in the image; the colours are balanced in
both splits, so chance is 1 in 6. No validation image is also a training image (each
(colour, shape, size, position) is drawn at most once). Each line is
{"messages": [{"role": "user", "content": [{"type": "image", "image": "images/train_000.png"},
{"type": "text", "text": "What colour is the shape?"}]},
{"role": "assistant", "content": [{"type": "text", "text": "red"}]}]}, with image paths relative
to the jsonl file. The output depends only on the seed (and Pillow's PNG encoder).
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {
    "red": (220, 30, 30),
    "green": (30, 160, 40),
    "blue": (30, 60, 220),
    "yellow": (240, 200, 0),
    "purple": (140, 40, 180),
    "orange": (255, 130, 0),
}
SHAPES = ("square", "circle", "triangle")
QUESTION = "What colour is the shape?"
SIDE = 32


def draw(colour: str, shape: str, size: int, x: int, y: int) -> Image.Image:
    """Return a SIDE x SIDE RGB image with one filled ``shape`` of side ``size`` at top-left ``(x, y)``."""
    image = Image.new("RGB", (SIDE, SIDE), (255, 255, 255))
    pen = ImageDraw.Draw(image)
    box = (x, y, x + size - 1, y + size - 1)
    fill = COLOURS[colour]
    if shape == "square":
        pen.rectangle(box, fill=fill)
    elif shape == "circle":
        pen.ellipse(box, fill=fill)
    else:
        pen.polygon([(x + (size - 1) / 2, y), (x, y + size - 1), (x + size - 1, y + size - 1)], fill=fill)
    return image


def row(image_path: str, colour: str) -> dict:
    """Return one conversation row: the image and the question, then the colour as the answer."""
    question = [{"type": "image", "image": image_path}, {"type": "text", "text": QUESTION}]
    return {
        "messages": [
            {"role": "user", "content": question},
            {"role": "assistant", "content": [{"type": "text", "text": colour}]},
        ]
    }


def main(
    out: Path = Path(__file__).parent / "vlm_shapes", per_colour: int = 64, held_out_per_colour: int = 12, seed: int = 0
) -> None:
    """Write ``per_colour`` training and ``held_out_per_colour`` validation images of each colour under ``out``."""
    rng = random.Random(seed)
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    splits: dict[str, list[tuple[str, str, int, int, int]]] = {"train": [], "validation": []}
    for colour in COLOURS:
        seen: set[tuple[str, str, int, int, int]] = set()
        while len(seen) < per_colour + held_out_per_colour:
            shape, size = rng.choice(SHAPES), rng.randint(10, 20)
            seen.add((colour, shape, size, rng.randint(0, SIDE - size), rng.randint(0, SIDE - size)))
        drawn = sorted(seen)
        rng.shuffle(drawn)
        splits["validation"] += drawn[:held_out_per_colour]
        splits["train"] += drawn[held_out_per_colour:]
    for name, samples in splits.items():
        rng.shuffle(samples)
        prefix = "val" if name == "validation" else name
        with (out / f"{name}.jsonl").open("w") as handle:
            for index, (colour, shape, size, x, y) in enumerate(samples):
                path = f"images/{prefix}_{index:03d}.png"
                draw(colour, shape, size, x, y).save(out / path, optimize=True)
                handle.write(json.dumps(row(path, colour)) + "\n")


if __name__ == "__main__":
    main()
