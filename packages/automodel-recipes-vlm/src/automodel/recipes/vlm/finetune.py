"""finetune: supervised fine-tuning of vision-language (image-text-to-text) models.

    automodel finetune vlm -c cfg.yaml
    python -m automodel.recipes.vlm.finetune -c cfg.yaml [--section.key VALUE ...]

Builders turn YAML sections into objects; ``setup()`` wires them in the order of docs/architecture.md
section 3; the step loop, validation, checkpoints and resume are automodel-training's
``FinetuneLoop``, shared with the LLM recipe. Checkpoints write the model and the processor
files, so ``AutoModelForImageTextToText.from_pretrained`` and ``AutoProcessor.from_pretrained``
load a step's ``model/`` with no automodel code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from automodel.checkpoint import (
    CHECKPOINT_KEYS,
    CheckpointSettings,
    build_checkpointer,
    config_fingerprint,
    restore_step,
    write_model_metadata,
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
from automodel.data.vlm import collate_for
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
    check_processor_matches,
    defer_weights,
    load_processor,
    materialize_model,
    pending_weights,
    training_flops_per_token,
)
from automodel.peft import adapter_state_dict
from automodel.recipes.vlm.adapters import add_adapters, build_peft, save_base_model, write_adapter
from automodel.recipes.vlm.freezing import FREEZE_KEYS, freeze_modules
from automodel.recipes.vlm.schema import FINETUNE, FINETUNE_REQUIRED, LOGGING
from automodel.training import (
    MISPLACED_TRACKERS,
    TRACKERS,
    FinetuneLoop,
    JsonlWriter,
    MaskedCrossEntropy,
    ProgressReporter,
    StepScheduler,
    build_trackers,
    image_text_exact_match,
    main_reporting_user_errors,
    measure_peak_tflops,
    set_seed,
)
from automodel.training import run_recipe as run_training_recipe

# This route's config, as `automodel <command> <domain> --help` lists it (read through the entry point).
SCHEMA, REQUIRED = FINETUNE, FINETUNE_REQUIRED

DATALOADER_KEYS = ("shuffle", "num_workers")
VALIDATION_KEYS = ("batch_size", "generation")


def build_processor(cfg: ConfigNode) -> Any:
    """Build the ``processor:`` section, or load the processor beside ``model.pretrained_model_name_or_path``."""
    if "processor" in cfg:
        return build_section(cfg, "processor")
    source = cfg.model.get("pretrained_model_name_or_path")
    if source is None:
        raise config_error(
            cfg,
            "the model is built from a config, so there is no processor to load beside it",
            "model",
            "add a `processor:` section (e.g. _target_: automodel.models.load_processor)",
        )
    with errors_named_by(cfg, "model"):
        return load_processor(source)


def build_loss_fn(cfg: ConfigNode) -> Any:
    """Build ``loss_fn:`` (default MaskedCrossEntropy); a loss reading hidden states is refused (it skips images)."""
    loss_fn = build_section(cfg, "loss_fn") if "loss_fn" in cfg else MaskedCrossEntropy()
    if getattr(loss_fn, "needs_hidden_states", False):
        raise config_error(
            cfg,
            f"{type(loss_fn).__name__} reads the language model's hidden states, which leaves out the images",
            "loss_fn",
            "use automodel.training.MaskedCrossEntropy (the default)",
        )
    return loss_fn


def build_step_scheduler(cfg: ConfigNode, dataloader: Any, dp_size: int) -> StepScheduler:
    """Build the StepScheduler from ``step_scheduler:`` (plain keys)."""
    with errors_named_by(cfg, "step_scheduler"):
        try:
            return StepScheduler(dataloader, dp_size=dp_size, **cfg.step_scheduler.to_container())
        except TypeError as exc:
            raise config_error(cfg, f"has a key StepScheduler does not take ({exc})", "step_scheduler") from None


class FinetuneRecipeForVLM(FinetuneLoop):
    """Fine-tune an image-text-to-text model on one process or many; see the module docstring."""

    def __init__(self, cfg: ConfigNode) -> None:
        self.cfg = cfg

    def setup(self) -> None:
        """Build model, processor, data, optimizer, schedules and writers from the config; resume if asked."""
        cfg = self.cfg
        refuse_moved_sections(cfg, MISPLACED_TRACKERS, "experiment trackers are set under `logging:`")
        check_config(cfg, FINETUNE, FINETUNE_REQUIRED, "finetune (vlm)", "examples/vlm_finetune")
        self.parallel = self._build_parallelism()
        self.device = self.parallel.device
        self.seed = set_seed(int(cfg.get("seed", 42)))
        self.processor = build_processor(cfg)
        self.checkpoint = CheckpointSettings.from_options(plain_section(cfg, "checkpoint", CHECKPOINT_KEYS))
        self.peft = build_peft(cfg)
        self.base_model_path = cfg.model.get("pretrained_model_name_or_path")
        # Under FSDP2 on several processes the model is built on the meta device and each rank
        # gets only its shards after sharding (materialize_model).
        with defer_weights(self._shards_before_weights()):
            model = build_section(cfg, "model")
            self.model = model if pending_weights(model) is not None else model.to(self.device)
            with errors_named_by(cfg, "processor" if "processor" in cfg else "model"):
                check_processor_matches(self.model, self.processor)
            frozen = freeze_modules(self.model, plain_section(cfg, "freeze_config", FREEZE_KEYS), cfg)
            peft_summary = self._add_adapters()
        self.model = self.parallel.parallelize(self.model)
        self.load_report = materialize_model(unwrap_model(self.model), self.device)
        with errors_named_by(cfg, "compile"):
            section = cfg.get("compile")
            compiled = compile_blocks(
                unwrap_model(self.model),
                parse_compile_config(section.to_container() if isinstance(section, ConfigNode) else section),
            )
        self._setup_data()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self.parallel.prepare_optimizer(build_section(cfg, "optimizer", params=params))
        self.lr_scheduler = None
        if "lr_scheduler" in cfg:
            total = self.step_scheduler.max_steps
            self.lr_scheduler = build_section(cfg, "lr_scheduler", optimizer=self.optimizer, total_steps=total)
        self.loss_fn = build_loss_fn(cfg)
        self.max_grad_norm = plain_section(cfg, "clip_grad_norm", ("max_norm",)).get("max_norm")
        self.checkpointer = build_checkpointer(self.checkpoint)
        resumed_from = self._restore()
        logging = plain_section(cfg, "logging", LOGGING)
        dtype = next(self.model.parameters()).dtype
        self.peak_tflops = logging.get("peak_tflops") or measure_peak_tflops(dtype, self.device)
        self.progress = ProgressReporter(
            self.step_scheduler.max_steps,
            self.step_scheduler.step,
            enabled=self.parallel.is_rank0,
            bar=logging.get("progress_bar"),
        )
        if frozen:
            self.progress.message(f"frozen: {', '.join(frozen)}")
        if peft_summary is not None:
            self.progress.message(peft_summary)
        if self.parallel.env.world_size > 1:
            self.progress.message(self.parallel.describe())
        if self.load_report is not None:
            self.progress.message(self.load_report.describe())
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

    def _add_adapters(self) -> str | None:
        """Add the ``peft:`` section's LoRA adapters (the base model is saved once when it has no path).

        Returns the summary line, or None without ``peft:``.
        """
        if self.peft is None:
            return None
        if self.base_model_path is None and self.checkpoint.enabled:
            base = self.checkpoint.dir / "base_model"
            if self.parallel.is_rank0:
                save_base_model(self.model, self.processor, base)
            self.base_model_path = str(base)
        return add_adapters(self.model, self.peft, self.cfg)

    def _shards_before_weights(self) -> bool:
        """Whether the model is built on the meta device and sharded before it gets its weights: under FSDP2 on
        several processes, unless the run writes its base model itself (LoRA on a model built from a config) or
        uses DoRA (its magnitudes are norms of the base weights)."""
        parallel, peft = self.parallel, self.peft
        if parallel.env.world_size == 1 or parallel.config.strategy != "fsdp2":
            return False
        writes_base = self.base_model_path is None and self.checkpoint.enabled
        return peft is None or not (peft.use_dora or writes_base)

    def _build_parallelism(self) -> Parallelism:
        section = self.cfg.get("distributed")
        with errors_named_by(self.cfg, "distributed"):
            return setup_parallelism(section.to_container() if isinstance(section, ConfigNode) else section)

    def _setup_data(self) -> None:
        """Build the datasets (handed the processor), this rank's dataloaders and the step scheduler."""
        cfg, parallel = self.cfg, self.parallel
        options = plain_section(cfg, "dataloader", DATALOADER_KEYS)
        validation = plain_section(cfg, "validation", VALIDATION_KEYS)
        local_batch_size = int(cfg.step_scheduler.get("local_batch_size", 1))
        collate = collate_for(self.processor)

        def loader(dataset: Any, batch_size: int, training: bool) -> Any:
            return build_dataloader(
                dataset,
                batch_size=batch_size,
                collate_fn=collate,
                shuffle=bool(options.get("shuffle", True)) and training,
                seed=self.seed,
                dp_rank=parallel.dp_rank,
                dp_size=parallel.dp_size,
                num_workers=int(options.get("num_workers", 0)),
                drop_last=training,
            )

        self.dataset = build_section(cfg, "dataset", processor=self.processor)
        self.dataloader = loader(self.dataset, local_batch_size, training=True)
        self.val_dataset = self.val_dataloader = None
        if "validation_dataset" in cfg:
            self.val_dataset = build_section(cfg, "validation_dataset", processor=self.processor)
            batch = int(validation.get("batch_size", local_batch_size))
            self.val_dataloader = loader(self.val_dataset, batch, training=False)
        self.generation = self._generation_settings(validation.get("generation"))
        self.step_scheduler = build_step_scheduler(cfg, self.dataloader, parallel.dp_size)

    def _generation_settings(self, generation: Any) -> dict | None:
        """``validation.generation`` as generation arguments plus the conversations, or None when off."""
        if generation is None or not generation.get("enabled", True):
            return None
        if self.val_dataset is None:
            raise config_error(self.cfg, "needs a `validation_dataset:` to generate from", "validation")
        settings = {"max_new_tokens": 32, "num_samples": 100, "batch_size": 16, **generation}
        settings.pop("enabled", None)
        count = min(int(settings.pop("num_samples")), len(self.val_dataset))
        return {**settings, "conversations": [self.val_dataset[i]["messages"] for i in range(count)]}

    @property
    def hf_model(self) -> torch.nn.Module:
        """The Hugging Face model being trained (inside a DDP wrapper, if any)."""
        return unwrap_model(self.model)

    def _model_fingerprint(self) -> str:
        return config_fingerprint(self.hf_model.config.to_dict())

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

    def _flops_per_token(self, seq_length: int) -> float:
        """The language model's training FLOPs per token (the vision tower is not counted)."""
        return training_flops_per_token(self.hf_model.config.get_text_config(), seq_length)

    def _generation_metrics(self, step: int) -> dict:
        """Greedy-generation exact match on the held-out answers (predictions to generations.jsonl)."""
        if self.generation is None:
            return {}
        settings = dict(self.generation)
        with self.parallel.generation(self.model) as model:
            result = image_text_exact_match(
                model,
                self.processor,
                settings.pop("conversations"),
                device=self.device,
                synced_gpus=self.parallel.env.world_size > 1,
                **settings,
            )
        if self.parallel.is_rank0:
            JsonlWriter(self.checkpoint.dir / "generations.jsonl").write(
                {
                    "step": step,
                    "predictions": [{k: v for k, v in r.items() if k != "prompt"} for r in result["predictions"]],
                }
            )
        return {"exact_match": result["exact_match"]}

    def _extra_files(self) -> dict[str, str]:
        return {"config.yaml": self.cfg.to_yaml(resolve=True, redact=True)}

    def _before_save(self) -> None:
        """Gather the LoRA adapter from the shards (every rank takes part) before a PEFT checkpoint."""
        self._adapter_state = adapter_state_dict(self.hf_model) if self.peft is not None else None

    def _saves_model_weights(self) -> bool:
        """A PEFT run's ``model/`` holds the adapter, not the full weights."""
        return self.peft is None

    def _write_model_files(self, model_dir: Path) -> None:
        """Write config.json, generation_config.json and the processor files beside the weights, or the
        adapter (HF PEFT format) and the processor files for a PEFT run."""
        if self.peft is None:
            write_model_metadata(self.hf_model, self.processor, model_dir)
            return
        write_adapter(self.hf_model, model_dir, self.base_model_path, self._adapter_state)
        self.processor.save_pretrained(model_dir)

    def _farewell(self, last_step: Path | None) -> None:
        super()._farewell(last_step)
        if last_step is None:
            return
        model_dir = str(last_step / "model")
        if self.peft is not None:
            how = (
                "  from peft import PeftModel\n  from transformers import AutoModelForImageTextToText\n"
                f"  base = AutoModelForImageTextToText.from_pretrained({str(self.base_model_path)!r})\n"
                f"  model = PeftModel.from_pretrained(base, {model_dir!r})"
            )
            self.progress.message(f"adapter saved to {model_dir}\nload it with peft:\n{how}")
            return
        how = (
            "  from transformers import AutoModelForImageTextToText, AutoProcessor\n"
            f"  model = AutoModelForImageTextToText.from_pretrained({model_dir!r})\n"
            f"  processor = AutoProcessor.from_pretrained({model_dir!r})"
        )
        self.progress.message(f"model saved to {model_dir}\nload it with transformers:\n{how}")


def main(cfg: ConfigNode | None = None) -> int:
    """Run the VLM fine-tuning recipe on ``cfg`` (default: the config named by ``-c`` in sys.argv); return 0."""
    cfg = load_config_from_argv() if cfg is None else cfg
    first = launcher_coordinates()[0] == 0
    return run_training_recipe(FinetuneRecipeForVLM, cfg, first_process=first, cleanup=destroy_distributed)


if __name__ == "__main__":
    sys.exit(main_reporting_user_errors(main))

__all__ = ["FinetuneRecipeForVLM", "build_loss_fn", "build_processor", "build_step_scheduler", "main"]
