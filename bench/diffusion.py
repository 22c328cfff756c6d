"""Diffusion pre-training: automodel's ``train diffusion`` recipe against diffusers' own training-script loop.

Every row trains the same tiny Stable Diffusion 3 transformer (``examples/diffusion/tiny_t2i.yaml``'s
denoiser config over the shipped ``examples/data/tiny_t2i/pipeline``, seeded so all rows start
from the same weights) on the 480 coloured-shape images of ``examples/data/t2i_shapes/train`` at
32x32, batches of 32, AdamW (lr 1e-3, no weight decay, constant), gradient clipping at 1.0,
logit-normal timestep sampling and unweighted flow-matching loss, for ``--steps`` steps:

- diffusers script loop: the per-step work of diffusers' ``examples/dreambooth/train_dreambooth_sd3.py``
  in plain PyTorch (no Accelerate): a batch from a torch DataLoader, ``vae.encode(...).latent_dist.sample()``
  shifted and scaled, the captions through ``pipe.encode_prompt`` (no_grad), timesteps from
  ``diffusers.training_utils.compute_density_for_timestep_sampling`` as indices into the scheduler's
  timesteps and their sigmas, ``(1 - sigma) x + sigma noise``, the transformer, target ``noise - latents``
  (the script's ``--precondition_outputs 0``; its default 1 regresses the clean latents instead),
  ``compute_loss_weighting_for_sd3``, MSE, backward, clipping, AdamW step.
- automodel, on-the-fly encoding: ``TrainRecipeForDiffusion`` over the image folder (VAE and text
  encoders run every step), with ``flow_matching.posterior: sample`` so that it trains, like the
  script, on a fresh VAE posterior sample per image and step.
- automodel, latent cache: the same recipe over the latent cache that
  ``automodel.recipes.diffusion.preprocess`` writes first (train and validation splits; its time is
  reported as its own column; the cache keeps each posterior's mean and standard deviation, so this
  row samples the posterior too); neither the VAE nor the text encoders are loaded.
- automodel, latent cache, compile: the same with ``compile: {enabled: true}`` (each transformer
  block through ``torch.compile``'s inductor, compiled during the untimed warm-up steps).

Every training row runs ``--seeds`` times (default 3) with the loop seeds 1234, 1235, ...: the
shuffling, noise, timesteps and posterior samples change, the initial weights do not. A single
300-step run's held-out loss varies by about 4% from seed to seed, so the table gives each row's
mean and standard deviation over the seeds and the loss ratio compares the means.

The recipe runs with ``parallel_scheme: ddp`` in one process (no wrapper at world size 1), no EMA,
validation at the start and end (``val_loss`` from its ``validation.jsonl``) and no checkpoint
(``save_final: false``). Each run and the preprocessing run in a fresh process. images/s counts
the steps after the first 10 (warm-up), from ``training.jsonl``'s per-step timestamps for the recipe
and the same clock points for the script loop, summed over a row's seeds; setup and validation
are outside. Peak RSS is the largest over a row's runs of the process's VmHWM when training ends
(interpreter, imports, models, data and training together); ``above imports`` is that peak less
the process's RSS after its imports, before anything is built.
The held-out loss is computed here, the same way for every row, from each row's final transformer:
the flow-matching loss on the 48 images of ``examples/data/t2i_shapes/validation`` at sigmas 0.25,
0.5 and 0.75, with fixed noise, on the VAE posterior's mean (the recipe's latents) and, as a second
column, on a fixed draw from the posterior (the script's latents). Prints one table and writes
bench/results/diffusion.csv.

    uv run --all-packages python bench/diffusion.py             # about 20 minutes on 2 cores
    uv run --all-packages python bench/diffusion.py --steps 50 --seeds 1 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import json
import multiprocessing
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch
from _measure import status_mib, write_csv
from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

from automodel.config import load_config
from automodel.models import AutoDiffusionPipeline

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).parent / "results" / "diffusion.csv"
PIPELINE = ROOT / "examples" / "data" / "tiny_t2i" / "pipeline"
DATA = ROOT / "examples" / "data" / "t2i_shapes"
DENOISER = load_config(ROOT / "examples" / "diffusion" / "tiny_t2i.yaml").model.denoiser_config.to_container()
SEED, BATCH, LR, RESOLUTION, MAX_SEQUENCE_LENGTH, WARMUP = 1234, 32, 1e-3, 32, 8, 10
HELD_OUT_SIGMAS = (0.25, 0.5, 0.75)
SCRIPT = "diffusers script loop"
ON_THE_FLY, CACHED = "automodel, on-the-fly encoding", "automodel, latent cache"
COMPILED = "automodel, latent cache, compile"
ROWS = (SCRIPT, ON_THE_FLY, CACHED, COMPILED)
COLUMNS = [  # (table heading, CSV field, format)
    ("row", "row", ""),
    ("images/s", "images_per_s", ".1f"),
    ("x script", "speed_ratio", ".2f"),
    ("peak RSS MiB", "peak_rss_mib", ".0f"),
    ("x script", "memory_ratio", ".2f"),
    ("above imports MiB", "training_mib", ".0f"),
    ("held-out loss", "held_out_loss", ".4f"),
    ("+-", "held_out_loss_std", ".4f"),
    ("x script", "loss_ratio", ".3f"),
    ("held-out, sampled latents", "held_out_loss_sampled", ".4f"),
    ("recipe val_loss", "recipe_val_loss", ".4f"),
    ("preprocess s", "preprocess_s", ".1f"),
]


class ImageFolder(torch.utils.data.Dataset):
    """An image folder's images (resized, in [-1, 1]) and captions, all transformed once up front as
    the DreamBooth script's dataset does; items are ``{"pixel_values", "prompt"}``."""

    def __init__(self, folder: Path) -> None:
        from PIL import Image

        rows = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines()]
        self.prompts = [row["text"] for row in rows]
        self.pixel_values = []
        for row in rows:
            image = Image.open(folder / row["file_name"]).convert("RGB").resize((RESOLUTION, RESOLUTION))
            pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 255.0
            self.pixel_values.append((pixels - 0.5) / 0.5)

    def __len__(self) -> int:
        """The number of images."""
        return len(self.prompts)

    def __getitem__(self, index: int) -> dict:
        """One image and its caption."""
        return {"pixel_values": self.pixel_values[index], "prompt": self.prompts[index]}


def collate(examples: list[dict]) -> dict:
    """Stack the images of a batch and list its captions."""
    return {
        "pixel_values": torch.stack([e["pixel_values"] for e in examples]),
        "prompts": [e["prompt"] for e in examples],
    }


def build_pipeline():
    """The shipped tiny SD3 pipeline with the seeded transformer every row starts from."""
    return AutoDiffusionPipeline.from_config(str(PIPELINE), denoiser_config=DENOISER, seed=SEED)


def encode_prompts(pipe, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """``pipe.encode_prompt`` without gradients: the prompt embeddings and the pooled ones."""
    with torch.no_grad():
        embeds, _, pooled, _ = pipe.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=torch.device("cpu"),
            do_classifier_free_guidance=False,
            max_sequence_length=MAX_SEQUENCE_LENGTH,
        )
    return embeds, pooled


def run_script_loop(steps: int, threads: int, seed: int) -> dict:
    """Train with the per-step work of diffusers' SD3 training script, the loop's randomness seeded
    with ``seed``; return speed, memory and weights."""
    torch.set_num_threads(threads)
    imported_mib = status_mib("VmRSS")
    torch.manual_seed(seed)
    trainable = build_pipeline()
    pipe, transformer, vae = trainable.pipeline, trainable.denoiser, trainable.pipeline.vae
    noise_scheduler_copy = copy.deepcopy(pipe.scheduler)
    loader = torch.utils.data.DataLoader(
        ImageFolder(DATA / "train"), batch_size=BATCH, shuffle=True, collate_fn=collate
    )
    optimizer = torch.optim.AdamW(transformer.parameters(), lr=LR, weight_decay=0.0)
    transformer.train()

    def sigmas_at(timesteps: torch.Tensor, n_dim: int, dtype: torch.dtype) -> torch.Tensor:
        """The scheduler's sigma at each of ``timesteps``, found by its index in the schedule, shaped to broadcast."""
        sigmas = noise_scheduler_copy.sigmas.to(dtype=dtype)
        schedule = noise_scheduler_copy.timesteps
        sigma = sigmas[[(schedule == t).nonzero().item() for t in timesteps]].flatten()
        return sigma.view(-1, *([1] * (n_dim - 1)))

    losses, step, started = [], 0, 0.0
    while step < steps:
        for batch in loader:
            pixel_values = batch["pixel_values"].to(dtype=vae.dtype)
            prompt_embeds, pooled_prompt_embeds = encode_prompts(pipe, batch["prompts"])
            posterior = vae.encode(pixel_values).latent_dist
            model_input = posterior.sample()
            model_input = (model_input - vae.config.shift_factor) * vae.config.scaling_factor
            noise = torch.randn_like(model_input)
            u = compute_density_for_timestep_sampling(
                weighting_scheme="logit_normal", batch_size=len(model_input), logit_mean=0.0, logit_std=1.0
            )
            indices = (u * noise_scheduler_copy.config.num_train_timesteps).long()
            timesteps = noise_scheduler_copy.timesteps[indices]
            sigmas = sigmas_at(timesteps, model_input.ndim, model_input.dtype)
            noisy_model_input = (1.0 - sigmas) * model_input + sigmas * noise
            model_pred = transformer(
                hidden_states=noisy_model_input,
                timestep=timesteps,
                encoder_hidden_states=prompt_embeds,
                pooled_projections=pooled_prompt_embeds,
                return_dict=False,
            )[0]
            weighting = compute_loss_weighting_for_sd3(weighting_scheme="logit_normal", sigmas=sigmas)
            target = noise - model_input
            loss = torch.mean(
                (weighting.float() * (model_pred.float() - target.float()) ** 2).reshape(len(target), -1), 1
            )
            loss = loss.mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.detach().item())
            step += 1
            if step == WARMUP:
                started = time.perf_counter()
            if step == steps:
                break
    seconds = time.perf_counter() - started
    return {
        "timed_images": (steps - WARMUP) * BATCH,
        "timed_seconds": seconds,
        "peak_rss_mib": status_mib("VmHWM"),
        "imported_rss_mib": imported_mib,
        "final_train_loss": float(np.mean(losses[-15:])),
        "state": {k: v.detach().clone() for k, v in transformer.state_dict().items()},
    }


def recipe_config(out: Path, steps: int, cache: Path | None, seed: int, compiled: bool = False) -> dict:
    """The train.diffusion config of an automodel run: the image folders, or the latent caches under
    ``cache``; posterior samples; ``seed`` for the run's randomness (the initial weights stay SEED's);
    ``compiled`` adds ``compile: {enabled: true}``."""

    def data(split: str) -> dict:
        if cache is not None:
            return {"_target_": "automodel.data.diffusion.LatentCacheDataset", "path": str(cache / split)}
        return {
            "_target_": "automodel.data.diffusion.ImageCaptionDataset",
            "path_or_dataset_id": str(DATA / split),
            "resolution": RESOLUTION,
        }

    return {
        "recipe": "train.diffusion",
        "seed": seed,
        "model": {
            "_target_": "automodel.models.AutoDiffusionPipeline.from_config",
            "components_from": str(PIPELINE),
            "denoiser_config": DENOISER,
            "seed": SEED,
        },
        "dataset": data("train"),
        "validation_dataset": data("validation"),
        "prompts": {"max_sequence_length": MAX_SEQUENCE_LENGTH},
        "flow_matching": {"timestep_sampling": "logit_normal", "weighting": "none", "posterior": "sample"},
        "parallel_scheme": "ddp",
        "step_scheduler": {
            "global_batch_size": BATCH,
            "local_batch_size": BATCH,
            "max_steps": steps,
            "log_interval": 1,
        },
        "optimizer": {"_target_": "torch.optim.AdamW", "lr": LR, "weight_decay": 0.0},
        "clip_grad_norm": {"max_norm": 1.0},
        "validation": {"batch_size": 48, "num_prompts": 0},
        "logging": {"progress_bar": False},
        "checkpoint": {"dir": str(out), "save_final": False},
        **({"compile": {"enabled": True}} if compiled else {}),
    }


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of a JSONL file."""
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_recipe(steps: int, threads: int, cache: str | None, seed: int, compiled: bool = False) -> dict:
    """Train with automodel's recipe (from the image folder, or the latent cache ``cache``); return speed,
    memory, the recipe's own losses and the final weights."""
    torch.set_num_threads(threads)
    from automodel.config import config_from_dict
    from automodel.recipes.diffusion.train import TrainRecipeForDiffusion

    imported_mib = status_mib("VmRSS")
    with tempfile.TemporaryDirectory(prefix="automodel-bench-") as tmp:
        out = Path(tmp) / "run"
        recipe = TrainRecipeForDiffusion(
            config_from_dict(recipe_config(out, steps, cache and Path(cache), seed, compiled))
        )
        with contextlib.redirect_stderr(io.StringIO()) as output:  # the progress lines: one per step
            recipe.setup()
            recipe.run_train_validation_loop()
        peak = status_mib("VmHWM")
        log = read_jsonl(out / "training.jsonl")
        validation = read_jsonl(out / "validation.jsonl")
    stamps = {record["step"]: record["timestamp"] for record in log}
    pipeline = recipe.trainable.pipeline
    return {
        "timed_images": (steps - WARMUP) * BATCH,
        "timed_seconds": stamps[steps] - stamps[WARMUP],
        "peak_rss_mib": peak,
        "imported_rss_mib": imported_mib,
        "messages": [line for line in output.getvalue().splitlines() if line.strip() and not line.startswith("step ")],
        "final_train_loss": float(np.mean([record["loss"] for record in log[-15:]])),
        "recipe_val_loss": validation[-1]["val_loss"],
        "encoders_loaded": [
            n for n in ("vae", "text_encoder", "text_encoder_2", "text_encoder_3") if getattr(pipeline, n)
        ],
        "state": {k: v.detach().clone() for k, v in recipe.trainable.denoiser.state_dict().items()},
    }


def run_preprocess(cache: str, threads: int) -> dict:
    """Write the latent caches of the train and validation images with automodel's preprocess; return its seconds."""
    torch.set_num_threads(threads)
    from automodel.config import config_from_dict
    from automodel.recipes.diffusion.preprocess import preprocess

    started = time.perf_counter()
    for split in ("train", "validation"):
        cfg = {
            "recipe": "preprocess.diffusion",
            "model": {
                "_target_": "automodel.models.AutoDiffusionPipeline.from_pretrained",
                "pretrained_model_name_or_path": str(PIPELINE),
            },
            "dataset": {
                "_target_": "automodel.data.diffusion.ImageCaptionDataset",
                "path_or_dataset_id": str(DATA / split),
                "resolution": RESOLUTION,
            },
            "prompts": {"max_sequence_length": MAX_SEQUENCE_LENGTH},
            "latent_cache": {"dir": str(Path(cache) / split), "batch_size": BATCH},
        }
        preprocess(config_from_dict(cfg))
    return {"seconds": time.perf_counter() - started, "peak_rss_mib": status_mib("VmHWM")}


class HeldOut:
    """The 48 validation images encoded once, with fixed noise: ``loss(state)`` is a transformer's
    flow-matching loss at the fixed sigmas, the same computation for every row."""

    def __init__(self) -> None:
        self.trainable = build_pipeline()
        pipe, vae = self.trainable.pipeline, self.trainable.pipeline.vae
        data = ImageFolder(DATA / "validation")
        self.embeds, self.pooled = encode_prompts(pipe, data.prompts)
        with torch.no_grad():
            posterior = vae.encode(torch.stack(data.pixel_values)).latent_dist
            draw = posterior.sample(generator=torch.Generator().manual_seed(SEED + 1))
        self.latents = {
            "mean": (posterior.mode() - vae.config.shift_factor) * vae.config.scaling_factor,
            "sampled": (draw - vae.config.shift_factor) * vae.config.scaling_factor,
        }
        self.noise = torch.randn(self.latents["mean"].shape, generator=torch.Generator().manual_seed(SEED))
        self.num_train_timesteps = pipe.scheduler.config.num_train_timesteps

    @torch.no_grad()
    def loss(self, state: dict, latents: str = "mean") -> float:
        """The mean over the fixed sigmas of the MSE between the prediction and ``noise - latents``."""
        transformer = self.trainable.denoiser.eval()
        transformer.load_state_dict(state)
        clean, losses = self.latents[latents], []
        for sigma in HELD_OUT_SIGMAS:
            prediction = transformer(
                hidden_states=(1.0 - sigma) * clean + sigma * self.noise,
                timestep=torch.full((len(clean),), sigma * self.num_train_timesteps),
                encoder_hidden_states=self.embeds,
                pooled_projections=self.pooled,
                return_dict=False,
            )[0]
            losses.append(float(torch.mean((prediction - (self.noise - clean)) ** 2)))
        return sum(losses) / len(losses)


def main() -> None:
    """Run the preprocessing and each row's seeds in fresh processes, score the weights, print the table and CSV."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help=f"optimizer steps per run (the first {WARMUP} untimed)")
    parser.add_argument("--seeds", type=int, default=3, help="runs per row, with the loop seeds 1234, 1235, ...")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads of every run (1, the default, is steadier on a busy machine)",
    )
    args = parser.parse_args()
    if args.steps <= WARMUP:
        parser.error(f"--steps must exceed the {WARMUP} warm-up steps")
    if args.seeds < 1:
        parser.error("--seeds must be at least 1")
    torch.set_num_threads(args.threads)
    spawn = multiprocessing.get_context("spawn")
    seeds = [SEED + i for i in range(args.seeds)]
    results: dict[str, list[dict]] = {name: [] for name in ROWS}
    with tempfile.TemporaryDirectory(prefix="automodel-bench-cache-") as cache:
        with spawn.Pool(1) as pool:
            print("running the preprocessing ...", flush=True)
            preprocessing = pool.apply(run_preprocess, (cache, args.threads))
        for seed in seeds:  # the rows alternate, so a slow spell of the machine does not fall on one row
            runs = [
                (SCRIPT, run_script_loop, (args.steps, args.threads, seed)),
                (ON_THE_FLY, run_recipe, (args.steps, args.threads, None, seed)),
                (CACHED, run_recipe, (args.steps, args.threads, cache, seed)),
                (COMPILED, run_recipe, (args.steps, args.threads, cache, seed, True)),
            ]
            for name, run, run_args in runs:
                print(f"running {name}, seed {seed} ...", flush=True)
                with spawn.Pool(1) as pool:  # a fresh process each: its peak RSS is this run's alone
                    results[name].append(pool.apply(run, run_args))
                for message in results[name][-1].get("messages", []) if seed == seeds[0] else []:
                    print(f"  {message}")
    loaded = {name for row in (CACHED, COMPILED) for result in results[row] for name in result["encoders_loaded"]}
    if loaded:
        raise SystemExit(f"the latent-cache run loaded {sorted(loaded)}")
    held_out = HeldOut()
    initial = held_out.loss(held_out.trainable.denoiser.state_dict())  # before any run's weights are loaded
    rows = []
    for name in ROWS:
        runs = results[name]
        losses = [held_out.loss(result["state"]) for result in runs]
        peak = max(result["peak_rss_mib"] for result in runs)
        imported = max(result["imported_rss_mib"] for result in runs)
        recipe_losses = [result["recipe_val_loss"] for result in runs if "recipe_val_loss" in result]
        rows.append(
            {
                "row": name,
                "images_per_s": sum(r["timed_images"] for r in runs) / sum(r["timed_seconds"] for r in runs),
                "peak_rss_mib": peak,
                "imported_rss_mib": imported,
                "training_mib": peak - imported,
                "held_out_loss": float(np.mean(losses)),
                "held_out_loss_std": float(np.std(losses)),
                "held_out_losses": " ".join(f"{loss:.4f}" for loss in losses),
                "held_out_loss_sampled": float(np.mean([held_out.loss(r["state"], "sampled") for r in runs])),
                "recipe_val_loss": float(np.mean(recipe_losses)) if recipe_losses else None,
                "final_train_loss": float(np.mean([r["final_train_loss"] for r in runs])),
                "preprocess_s": preprocessing["seconds"] if name in (CACHED, COMPILED) else None,
                "preprocess_peak_rss_mib": preprocessing["peak_rss_mib"] if name in (CACHED, COMPILED) else None,
            }
        )
    base = rows[0]
    for row in rows:
        row["speed_ratio"] = row["images_per_s"] / base["images_per_s"]
        row["memory_ratio"] = row["peak_rss_mib"] / base["peak_rss_mib"]
        row["loss_ratio"] = row["held_out_loss"] / base["held_out_loss"]
        row.update(steps=args.steps, seeds=args.seeds, threads=args.threads, initial_held_out_loss=initial)
        row.update(torch=version("torch"), diffusers=version("diffusers"))
    params = sum(p.numel() for p in held_out.trainable.denoiser.parameters())
    print(
        f"SD3 transformer {params / 1e6:.2f}M params fp32 on the CPU ({args.threads} threads), {args.steps} steps of "
        f"{BATCH} images at {RESOLUTION}x{RESOLUTION}, {args.seeds} seeds per row, every row on posterior samples; "
        f"images/s after {WARMUP} warm-up steps; largest peak RSS of a row's training processes; held-out "
        f"flow-matching loss on 48 images at sigmas {HELD_OUT_SIGMAS}, mean and standard deviation over the seeds "
        f"(initial weights: {initial:.4f}). Ratios: against the diffusers script loop."
    )
    cells = [[format(row[key], fmt) if row[key] is not None else "" for _, key, fmt in COLUMNS] for row in rows]
    widths = [max(len(title), *(len(line[i]) for line in cells)) for i, (title, _, _) in enumerate(COLUMNS)]
    print("  ".join(title.rjust(width) for (title, _, _), width in zip(COLUMNS, widths, strict=True)))
    for line in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))
    for row in rows:
        print(f"{row['row']}: held-out loss per seed {row['held_out_losses']}")
    write_csv(RESULTS, [{k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()} for row in rows])


if __name__ == "__main__":
    main()
