"""train: flow-matching (or DDPM) training of a diffusers text-to-image pipeline's denoiser.

    automodel train diffusion -c cfg.yaml
    python -m automodel.recipes.diffusion.train -c cfg.yaml [--section.key VALUE ...]

``setup()`` builds, in order: the processes (``parallel_scheme: ddp | fsdp2``), the data (an
image-caption folder encoded on the fly, or a latent cache, in which case the VAE and text
encoders are not loaded), the pipeline (``from_pretrained`` fine-tunes, ``from_config``
pre-trains the denoiser), LoRA (``peft:``), the sharded or replicated denoiser, the EMA, the
objective, the optimizer and the checkpointer. The step loop, validation schedule, signals and
resume are automodel-training's ``FinetuneLoop``. A step's ``model/`` is a diffusers pipeline
folder (``DiffusionPipeline.from_pretrained``), or for a LoRA run the diffusers LoRA file
(``pipe.load_lora_weights``); ``ema/`` beside it holds the EMA weights of the denoiser.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

from automodel.checkpoint import (
    CHECKPOINT_KEYS,
    CheckpointSettings,
    build_checkpointer,
    config_fingerprint,
    restore_step,
)
from automodel.config import (
    ConfigNode,
    build_section,
    check_config,
    config_error,
    errors_named_by,
    load_config_from_argv,
    location_of,
    plain_section,
    redact_secrets,
    refuse_moved_sections,
)
from automodel.data import build_dataloader, fast_forward
from automodel.data.diffusion import LatentCacheDataset, collate_image_captions, collate_latents
from automodel.distributed import (
    Parallelism,
    compile_blocks,
    destroy_distributed,
    launcher_coordinates,
    parse_compile_config,
    setup_parallelism,
    unwrap_model,
)
from automodel.models import (
    DenoiserForTraining,
    DiffusionPipelineForTraining,
    pipeline_kind,
    sample_images,
    sampling_arguments,
)
from automodel.peft import adapter_state_dict
from automodel.recipes.diffusion.conditioning import (
    encode_batch,
    encoder_fingerprint,
    null_conditioning,
)
from automodel.recipes.diffusion.lora import add_lora, build_lora, lora_metadata
from automodel.recipes.diffusion.pipeline_files import (
    link_frozen_components,
    local_pipeline_folder,
    write_denoiser,
    write_lora,
)
from automodel.recipes.diffusion.schema import LOGGING, PARALLEL_SCHEMES, TRAIN, TRAIN_REQUIRED
from automodel.recipes.diffusion.sections import build_pipeline, max_sequence_length
from automodel.training import (
    MISPLACED_TRACKERS,
    TRACKERS,
    FinetuneLoop,
    JsonlWriter,
    ProgressReporter,
    StepScheduler,
    build_trackers,
    main_reporting_user_errors,
    set_seed,
)
from automodel.training import run_recipe as run_training_recipe
from automodel.training.diffusion import (
    ExponentialMovingAverage,
    diffusion_train_step,
    diffusion_validation_loss,
    objective_from_scheduler_config,
)

# This route's config, as `automodel <command> <domain> --help` lists it (read through the entry point).
SCHEMA, REQUIRED = TRAIN, TRAIN_REQUIRED

DATALOADER_KEYS = ("shuffle", "num_workers")
VALIDATION_KEYS = (
    "batch_size",
    "timesteps",
    "prompts",
    "num_prompts",
    "num_inference_steps",
    "guidance_scale",
    "height",
    "width",
)


class DiffusionTrainingState(torch.nn.Module):
    """What a checkpoint saves as the model: the (wrapped) denoiser and, when on, its EMA."""

    def __init__(self, denoiser: torch.nn.Module, ema: ExponentialMovingAverage | None) -> None:
        super().__init__()
        self.denoiser = denoiser
        self.ema = ema


class TrainRecipeForDiffusion(FinetuneLoop):
    """Train a diffusion pipeline's denoiser on one process or many; see the module docstring."""

    throughput_label = "img/s"

    def __init__(self, cfg: ConfigNode) -> None:
        self.cfg = cfg

    def setup(self) -> None:
        """Build processes, data, pipeline, LoRA, EMA, objective, optimizer and checkpointer; resume if asked."""
        cfg = self.cfg
        refuse_moved_sections(cfg, MISPLACED_TRACKERS, "experiment trackers are set under `logging:`")
        check_config(cfg, TRAIN, TRAIN_REQUIRED, "train (diffusion)", "examples/diffusion")
        self.parallel = self._build_parallelism()
        self.device = self.parallel.device
        self.seed = set_seed(int(cfg.get("seed", 42)))
        self.max_sequence_length = max_sequence_length(cfg)
        self.from_cache = _dataset_is_latent_cache(cfg, "dataset")
        self.trainable = self._build_pipeline()
        self.kind = pipeline_kind(self.trainable.pipeline)
        self.trainable.pipeline.set_progress_bar_config(disable=True)
        self.checkpoint = CheckpointSettings.from_options(plain_section(cfg, "checkpoint", CHECKPOINT_KEYS))
        self.pipeline_files = local_pipeline_folder(self.trainable.source) if self.parallel.is_rank0 else None
        self._move_components()
        self.peft = build_lora(cfg)
        self.base_pipeline = self.trainable.source
        peft_summary = None
        if self.peft is not None:
            self.base_pipeline = self._save_base_pipeline()
            peft_summary = add_lora(self.trainable.denoiser, self.peft, cfg)
        denoiser = DenoiserForTraining(self.trainable.denoiser, self.kind).to(self.device)
        self.denoiser = self.parallel.parallelize(denoiser)
        with errors_named_by(cfg, "compile"):
            section = cfg.get("compile")
            compiled = compile_blocks(
                unwrap_model(self.denoiser),
                parse_compile_config(section.to_container() if isinstance(section, ConfigNode) else section),
            )
        self.ema = self._build_ema()
        self.model = DiffusionTrainingState(self.denoiser, self.ema)
        self._setup_data()
        self.objective = self._build_objective()
        params = [p for p in self.denoiser.parameters() if p.requires_grad]
        self.optimizer = self.parallel.prepare_optimizer(build_section(cfg, "optimizer", params=params))
        self.lr_scheduler = None
        if "lr_scheduler" in cfg:
            total = self.step_scheduler.max_steps
            self.lr_scheduler = build_section(cfg, "lr_scheduler", optimizer=self.optimizer, total_steps=total)
        self.loss_fn = self.objective
        self.max_grad_norm = plain_section(cfg, "clip_grad_norm", ("max_norm",)).get("max_norm")
        self.checkpointer = build_checkpointer(self.checkpoint)
        resumed_from = self._restore()
        logging = plain_section(cfg, "logging", LOGGING)
        self.peak_tflops = logging.get("peak_tflops") or 1.0
        self.progress = ProgressReporter(
            self.step_scheduler.max_steps,
            self.step_scheduler.step,
            enabled=self.parallel.is_rank0,
            bar=logging.get("progress_bar"),
        )
        trained = sum(p.numel() for p in params)
        self.progress.message(
            f"{self.kind}: training {', '.join(self.trainable.train_components)} ({trained:,} parameters)"
            + (", from the latent cache" if self.from_cache else "")
        )
        if peft_summary is not None:
            self.progress.message(peft_summary)
        if self.parallel.env.world_size > 1:
            self.progress.message(self.parallel.describe())
        if compiled:
            self.progress.message(f"torch.compile: {compiled} blocks (compiled at their first call)")
        if resumed_from is not None:
            self.progress.message(f"resumed from {resumed_from} at step {self.step_scheduler.step}")
        self.training_log = JsonlWriter(self.checkpoint.dir / "training.jsonl")
        self.validation_log = JsonlWriter(self.checkpoint.dir / "validation.jsonl")
        with errors_named_by(cfg, "logging"):
            self.trackers = build_trackers(
                {name: logging[name] for name in TRACKERS if name in logging},
                run_dir=self.checkpoint.dir,
                config=redact_secrets(cfg.to_container(), cfg.to_container(resolve=False)),
                enabled=self.parallel.is_rank0,
                start_step=self.step_scheduler.step,
            )

    def _build_parallelism(self) -> Parallelism:
        """Join the processes with ``parallel_scheme`` (ddp or fsdp2) as the ``distributed:`` strategy."""
        cfg = self.cfg
        section = cfg.get("distributed")
        settings = dict(section.to_container()) if isinstance(section, ConfigNode) else {}
        scheme = cfg.get("parallel_scheme", "fsdp2")
        if "strategy" in settings:
            raise config_error(
                cfg,
                "sets distributed.strategy; the diffusion recipe takes `parallel_scheme` instead",
                "distributed",
                f"remove distributed.strategy and set parallel_scheme to one of {', '.join(PARALLEL_SCHEMES)}",
            )
        with errors_named_by(cfg, "distributed"):
            return setup_parallelism({**settings, "strategy": scheme})

    def _build_pipeline(self) -> DiffusionPipelineForTraining:
        """Build ``model:``; with a latent cache only the denoiser and the scheduler are loaded."""
        return build_pipeline(self.cfg, "denoiser" if self.from_cache else "all")

    def _move_components(self) -> None:
        """Put the frozen components (VAE, text encoders) on this process's device."""
        for name in self.trainable.frozen_components:
            getattr(self.trainable.pipeline, name).to(self.device)

    def _save_base_pipeline(self) -> str:
        """The pipeline LoRA adapts: the source when its denoiser was loaded, else one written once to the run."""
        cfg = self.cfg
        target = str(cfg.model.get("_target_", ""))
        if not target.endswith("from_config"):
            return self.trainable.source
        base = self.checkpoint.dir / "base_pipeline"
        if self.parallel.is_rank0 and not base.is_dir():
            partial = base.with_name(base.name + ".partial")
            partial.mkdir(parents=True, exist_ok=True)
            link_frozen_components(self.pipeline_files, partial, self.trainable.denoiser_name)
            denoiser = self.trainable.denoiser
            write_denoiser(denoiser, denoiser.state_dict(), partial / self.trainable.denoiser_name, "5GB")
            partial.rename(base)
        return str(base)

    def _build_ema(self) -> ExponentialMovingAverage | None:
        section = plain_section(self.cfg, "ema", ("decay", "update_after_step", "warmup"))
        if not section:
            return None
        with errors_named_by(self.cfg, "ema"):
            return ExponentialMovingAverage(unwrap_model(self.denoiser).model.named_parameters(), **section)

    def _build_objective(self) -> Any:
        """The objective of the pipeline's scheduler (flow matching or DDPM) with ``flow_matching:``'s settings."""
        cfg = self.cfg
        section = cfg.get("flow_matching")
        settings = dict(section.to_container()) if isinstance(section, ConfigNode) else {}
        settings.setdefault("seed", self.seed)
        with errors_named_by(cfg, "flow_matching"):
            objective = objective_from_scheduler_config(dict(self.trainable.pipeline.scheduler.config), settings)
        if float(settings.get("caption_dropout") or 0) > 0:
            objective.null_conditioning = self._null_conditioning()
        if objective.posterior == "sample" and self.from_cache and "latents_std" not in self.dataset.keys:
            raise config_error(
                cfg,
                "sets posterior: sample, and the latent cache stores the VAE posterior's means only",
                "flow_matching",
                "re-run `automodel preprocess diffusion` into a new cache (automodel-recipes-diffusion 0.2.0 "
                "and later store the standard deviations too), or set posterior to mean",
            )
        return objective

    def _null_conditioning(self) -> dict[str, torch.Tensor]:
        if self.from_cache:
            if self.dataset.null_conditioning is None:
                raise config_error(
                    self.cfg,
                    "caption_dropout needs the empty caption's embeddings, and the latent cache has none",
                    "flow_matching",
                    "re-run `automodel preprocess diffusion` (it stores them), or set caption_dropout to 0",
                )
            return self.dataset.null_conditioning
        return null_conditioning(self.trainable.pipeline, self.max_sequence_length)

    def _setup_data(self) -> None:
        """Build the datasets, this rank's dataloaders and the step scheduler."""
        cfg, parallel = self.cfg, self.parallel
        options = plain_section(cfg, "dataloader", DATALOADER_KEYS)
        self.validation = plain_section(cfg, "validation", VALIDATION_KEYS)
        local_batch_size = int(cfg.step_scheduler.get("local_batch_size", 1))
        fingerprint = encoder_fingerprint(self.trainable.source, self.max_sequence_length) if self.from_cache else None

        def loader(dataset: Any, batch_size: int, training: bool) -> Any:
            return build_dataloader(
                dataset,
                batch_size=batch_size,
                collate_fn=collate_latents if isinstance(dataset, LatentCacheDataset) else collate_image_captions,
                shuffle=bool(options.get("shuffle", True)) and training,
                seed=self.seed,
                dp_rank=parallel.dp_rank,
                dp_size=parallel.dp_size,
                num_workers=int(options.get("num_workers", 0)),
                drop_last=training,
            )

        self.dataset = self._build_dataset("dataset", fingerprint)
        self.dataloader = loader(self.dataset, local_batch_size, training=True)
        self.val_dataset = self.val_dataloader = None
        if "validation_dataset" in cfg:
            self.val_dataset = self._build_dataset("validation_dataset", fingerprint)
            batch = int(self.validation.get("batch_size") or local_batch_size)
            self.val_dataloader = loader(self.val_dataset, batch, training=False)
        self.prompts = self._sample_prompts()
        self.step_scheduler = _build_step_scheduler(cfg, self.dataloader, parallel.dp_size)

    def _build_dataset(self, key: str, fingerprint: dict | None) -> Any:
        cfg = self.cfg
        if _dataset_is_latent_cache(cfg, key) != self.from_cache:
            raise config_error(
                cfg,
                "and `dataset:` must both be latent caches or both image-caption data",
                key,
                "encode both with `automodel preprocess diffusion`, or point both at image folders",
            )
        if fingerprint is not None:
            dataset = build_section(cfg, key, expected_fingerprint=fingerprint)
        else:
            dataset = build_section(cfg, key)
        if self.from_cache:
            self._check_latent_channels(dataset, key)
        else:
            self._check_resolutions(dataset, key)
        return dataset

    def _check_resolutions(self, dataset: Any, key: str) -> None:
        """An image size the VAE (and the transformer's patches) cannot take is a user error naming the section."""
        pipeline = self.trainable.pipeline
        factor = int(pipeline.vae_scale_factor) * int(getattr(pipeline, "patch_size", 1) or 1)
        for height, width in getattr(dataset, "buckets", ()):
            if height % factor or width % factor:
                raise config_error(
                    self.cfg,
                    f"resizes images to {height}x{width}, which this pipeline cannot take: height and width must be "
                    f"multiples of {factor} (the VAE's downsampling times the denoiser's patch size)",
                    key,
                    f"set resolution (and every bucket) to multiples of {factor}, e.g. "
                    f"{max(factor, height - height % factor)}",
                )

    def _check_latent_channels(self, dataset: Any, key: str) -> None:
        """A cache whose latents the denoiser cannot take is a user error naming the section."""
        if len(dataset) == 0:
            return
        channels = int(dataset[0]["latents"].shape[0])
        expected = int(self.trainable.denoiser.config.in_channels)
        if channels != expected:
            raise config_error(
                self.cfg,
                f"holds latents of {channels} channels; the model's {self.trainable.denoiser_name} takes {expected}",
                key,
                "encode the data with this model's VAE (`automodel preprocess diffusion`)",
            )

    def _sample_prompts(self) -> list[str]:
        """The fixed prompts sampled at each validation: ``validation.prompts``, else the first validation captions."""
        if self.from_cache:
            return []
        given = self.validation.get("prompts")
        if given is not None:
            if not isinstance(given, list) or not all(isinstance(p, str) for p in given):
                raise config_error(self.cfg, "prompts must be a list of strings", "validation")
            return list(given)
        count = int(self.validation.get("num_prompts") or 0)
        if count == 0 or self.val_dataset is None:
            return []
        return [self.val_dataset[i]["caption"] for i in range(min(count, len(self.val_dataset)))]

    def _latent_batch(self, batch: dict) -> dict:
        """A batch of latents and prompt embeddings: the cache's as they are, image-caption batches encoded now."""
        if self.from_cache:
            return batch
        return encode_batch(self.trainable.pipeline, batch, self.device, self.max_sequence_length)

    def _encoded(self, loader: Any) -> Iterator[dict]:
        for batch in loader:
            yield self._latent_batch(batch)

    def _train_step(self, micro_batches: list[dict]) -> Any:
        return diffusion_train_step(
            self.denoiser,
            [self._latent_batch(b) for b in micro_batches],
            self.objective,
            self.optimizer,
            step=self.step_scheduler.step,
            lr_scheduler=self.lr_scheduler,
            max_grad_norm=self.max_grad_norm,
            device=self.device,
            all_reduce=self.parallel.sum_over_data_parallel(),
            ema=self.ema,
        )

    def _resume_objects(self) -> dict[str, Any]:
        """The loop's resume objects without the denoiser and the EMA: the checkpointed model holds both."""
        return {k: v for k, v in super()._resume_objects().items() if k not in ("denoiser", "ema")}

    def _batch_rows(self, batch: dict) -> int:
        return len(batch["indices"])

    def _flops_per_token(self, seq_length: int) -> float:
        """MFU is not counted for diffusion models yet: the throughput is reported as images per second."""
        return 0.0

    def _validation_metrics(self) -> dict:
        timesteps = self.validation.get("timesteps")
        return diffusion_validation_loss(
            self.denoiser,
            self._encoded(self.val_dataloader),
            self.objective,
            timesteps=timesteps,
            device=self.device,
            all_reduce=self.parallel.sum_over_data_parallel(),
        )

    def _generation_metrics(self, step: int) -> dict:
        """Sample an image per fixed prompt (every rank takes part) and write them as PNGs under ``samples/``."""
        if not self.prompts:
            return {}
        pipeline = self.trainable.pipeline
        arguments = sampling_arguments(
            pipeline,
            num_inference_steps=int(self.validation.get("num_inference_steps") or 20),
            guidance_scale=float(self.validation.get("guidance_scale") or 1.0),
            height=self.validation.get("height"),
            width=self.validation.get("width"),
            max_sequence_length=self.max_sequence_length,
        )
        was_training = self.denoiser.training
        with torch.no_grad():
            images = sample_images(pipeline, self.prompts, seed=self.seed, **arguments)
        self.denoiser.train(was_training)
        if self.parallel.is_rank0:
            folder = self.checkpoint.dir / "samples" / f"step_{step:06d}"
            folder.mkdir(parents=True, exist_ok=True)
            for number, image in enumerate(images):
                Image.fromarray(np.round(image * 255).astype(np.uint8)).save(folder / f"{number:03d}.png")
            record = {
                "prompts": self.prompts,
                "seed": self.seed,
                **{k: v for k, v in arguments.items() if k != "output_type"},
            }
            (folder / "prompts.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        return {}

    @property
    def hf_model(self) -> torch.nn.Module:
        """The diffusers denoiser being trained."""
        return self.trainable.denoiser

    def _model_fingerprint(self) -> str:
        return config_fingerprint(dict(self.trainable.denoiser.config))

    def _restore_step_dir(self) -> Path | None:
        path = plain_section(self.cfg, "restore_from", ("path",)).get("path")
        return restore_step(path, self.checkpointer, self.checkpoint)

    def _check_same_model(self, step_dir: Path) -> None:
        where = location_of(self.cfg, "model")
        current = f"the `model:` section of {where[0]}" if where else "the `model:` section"
        self.checkpointer.check_same_model(step_dir, self._model_fingerprint(), current)

    def _fast_forward(self) -> None:
        with errors_named_by(self.cfg, "distributed"):
            fast_forward(self.dataloader, self.step_scheduler.epoch, self.step_scheduler.samples_into_epoch)

    def _before_save(self) -> None:
        """Gather the trained weights (every rank takes part): the adapter, or the denoiser and its EMA."""
        inner = unwrap_model(self.denoiser).model
        if self.peft is not None:
            self._adapter_state = adapter_state_dict(inner)
            return
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        self._denoiser_state = get_model_state_dict(inner, options=options)
        self._ema_state = None
        if self.ema is not None:
            shadows = {name: _whole(t) for name, t in self.ema.shadow_state_dict().items()}
            self._ema_state = {**self._denoiser_state, **shadows}

    def _saves_model_weights(self) -> bool:
        return False

    def _write_model_files(self, model_dir: Path) -> None:
        """Write the pipeline folder (or the LoRA file) into ``model_dir`` and the EMA weights beside it."""
        name = self.trainable.denoiser_name
        if self.peft is not None:
            write_lora(
                type(self.trainable.pipeline),
                self._adapter_state,
                lora_metadata(self.peft, self.trainable.denoiser),
                model_dir,
                name,
            )
            return
        link_frozen_components(self.pipeline_files, model_dir, name)
        denoiser = self.trainable.denoiser
        write_denoiser(denoiser, self._denoiser_state, model_dir / name, self.checkpoint.max_shard_size)
        if self._ema_state is not None:
            write_denoiser(denoiser, self._ema_state, model_dir.parent / "ema" / name, self.checkpoint.max_shard_size)

    def _extra_files(self) -> dict[str, str]:
        return {"config.yaml": self.cfg.to_yaml(resolve=True, redact=True)}

    def _farewell(self, last_step: Path | None) -> None:
        super()._farewell(last_step)
        if last_step is None:
            return
        model_dir = str(last_step / "model")
        call = f"images = pipe(prompt, max_sequence_length={self.max_sequence_length}).images"
        if self.peft is not None:
            how = (
                "  from diffusers import DiffusionPipeline\n"
                f"  pipe = DiffusionPipeline.from_pretrained({self.base_pipeline!r})\n"
                f"  pipe.load_lora_weights({model_dir!r})\n  {call}"
            )
            self.progress.message(f"LoRA weights saved to {model_dir}\nload them with diffusers:\n{how}")
            return
        how = (
            "  from diffusers import DiffusionPipeline\n"
            f"  pipe = DiffusionPipeline.from_pretrained({model_dir!r})\n  {call}"
        )
        self.progress.message(f"pipeline saved to {model_dir}\nload it with diffusers:\n{how}")


def _whole(tensor: torch.Tensor) -> torch.Tensor:
    """A CPU copy of a tensor, gathered first when it is a DTensor shard (a collective)."""
    if hasattr(tensor, "full_tensor"):
        tensor = tensor.full_tensor()
    return tensor.detach().to("cpu", copy=True)


def _dataset_is_latent_cache(cfg: ConfigNode, key: str) -> bool:
    section = cfg.get(key)
    return isinstance(section, ConfigNode) and str(section.get("_target_", "")).endswith("LatentCacheDataset")


def _build_step_scheduler(cfg: ConfigNode, dataloader: Any, dp_size: int) -> StepScheduler:
    """Build the StepScheduler from ``step_scheduler:`` (plain keys)."""
    with errors_named_by(cfg, "step_scheduler"):
        try:
            return StepScheduler(dataloader, dp_size=dp_size, **cfg.step_scheduler.to_container())
        except TypeError as exc:
            raise config_error(cfg, f"has a key StepScheduler does not take ({exc})", "step_scheduler") from None


def main(cfg: ConfigNode | None = None) -> int:
    """Run the diffusion training recipe on ``cfg`` (default: the config named by ``-c`` in sys.argv); return 0."""
    cfg = load_config_from_argv() if cfg is None else cfg
    first = launcher_coordinates()[0] == 0
    return run_training_recipe(TrainRecipeForDiffusion, cfg, first_process=first, cleanup=destroy_distributed)


if __name__ == "__main__":
    sys.exit(main_reporting_user_errors(main))

__all__ = ["DiffusionTrainingState", "TrainRecipeForDiffusion", "main"]
