"""Write the shipped tiny text-to-image task and the frozen parts of its pipeline.

    python examples/data/make_t2i_shapes.py    # writes t2i_shapes/{train,validation}/ and tiny_t2i/pipeline/

Each 32x32 PNG shows one filled square, circle or triangle of a random size (16 to 22 pixels) near
the centre (within 3 pixels) of a white background, in one of four colours (red, green, blue,
yellow); its caption names them ("a red circle"). Train and validation folders follow the
diffusers ImageFolder convention
(PNGs beside a metadata.jsonl of {"file_name", "text"}); no validation image is also a training
image. tiny_t2i/pipeline/ is a Stable Diffusion 3 pipeline folder whose VAE this script trains
on the training images (a few minutes on 2 CPU cores) and whose text encoders, tokenizers and
transformer are random (automodel.models.build_tiny_sd3_pipeline): the example pre-trains the
transformer from its config. The output depends only on the seed.
"""

from __future__ import annotations

import json
import random
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from t2i_shapes_check import COLOURS, SHAPES

from automodel.models import build_tiny_sd3_pipeline, tiny_vae

SIDE = 32
JITTER = 3
HERE = Path(__file__).parent
VOCABULARY = ["a", *COLOURS, *SHAPES]


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


def write_split(out: Path, samples: list[tuple], name: str) -> list[np.ndarray]:
    """Write one split's PNGs and metadata.jsonl; return the images as arrays."""
    folder = out / name
    folder.mkdir(parents=True)
    arrays, rows = [], []
    for number, (colour, shape, size, x, y) in enumerate(samples):
        image = draw(colour, shape, size, x, y)
        file_name = f"{number:04d}.png"
        image.save(folder / file_name)
        rows.append({"file_name": file_name, "text": f"a {colour} {shape}"})
        arrays.append(np.asarray(image))
    (folder / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return arrays


def train_vae(images: list[np.ndarray], steps: int, seed: int) -> torch.nn.Module:
    """Train ``tiny_vae()`` to reconstruct ``images`` (MSE plus a small KL term); return it in eval mode."""
    torch.manual_seed(seed)
    vae = tiny_vae(seed=seed)
    data = torch.tensor(np.stack(images), dtype=torch.float32).permute(0, 3, 1, 2) / 127.5 - 1
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    for step in range(steps):
        batch = data[torch.randint(len(data), (32,))]
        posterior = vae.encode(batch).latent_dist
        reconstruction = vae.decode(posterior.sample()).sample
        loss = torch.nn.functional.mse_loss(reconstruction, batch) + 1e-6 * posterior.kl().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step % 200 == 0 or step == steps - 1:
            print(f"vae step {step}: reconstruction loss {loss.item():.4f}", flush=True)
    return vae.eval()


def _near_centre(size: int) -> range:
    """The top-left offsets that put a shape of side ``size`` within ``JITTER`` pixels of the centre."""
    centre = (SIDE - size) // 2
    return range(max(0, centre - JITTER), min(SIDE - size, centre + JITTER) + 1)


def main(seed: int = 0, train: int = 480, validation: int = 48, vae_steps: int = 500) -> None:
    """Write the data and the pipeline folder, replacing earlier output."""
    rng = random.Random(seed)
    pool = [
        (colour, shape, size, x, y)
        for colour in COLOURS
        for shape in SHAPES
        for size in range(16, 23, 2)
        for x in _near_centre(size)
        for y in _near_centre(size)
    ]
    rng.shuffle(pool)
    by_class: dict[tuple, list[tuple]] = {}
    for sample in pool:
        by_class.setdefault(sample[:2], []).append(sample)
    classes = len(by_class)
    held_out = [s for group in by_class.values() for s in group[: validation // classes]]
    training = [s for group in by_class.values() for s in group[validation // classes :][: train // classes]]
    rng.shuffle(held_out)
    rng.shuffle(training)
    data_dir = HERE / "t2i_shapes"
    shutil.rmtree(data_dir, ignore_errors=True)
    images = write_split(data_dir, training, "train")
    write_split(data_dir, held_out, "validation")
    vae = train_vae(images, vae_steps, seed)
    pipeline_dir = HERE / "tiny_t2i" / "pipeline"
    shutil.rmtree(pipeline_dir, ignore_errors=True)
    build_tiny_sd3_pipeline(VOCABULARY, seed=seed, vae=vae).save_pretrained(pipeline_dir)
    print(f"wrote {len(training)} training and {len(held_out)} validation images to {data_dir}")
    print(f"wrote the tiny pipeline to {pipeline_dir}")


if __name__ == "__main__":
    main()
