"""train_ft: supervised fine-tuning and pre-training of causal language models.

    automodel finetune llm -c cfg.yaml          (or pretrain llm)
    python -m automodel.recipes.llm.train_ft -c cfg.yaml [--section.key VALUE ...]

The recipe reads top to bottom like the run: builders turn YAML sections into objects,
``setup()`` wires them in the order of docs/architecture.md section 3, and the loop runs optimizer
steps, logging, validation and checkpoints on the step scheduler's schedule.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import torch

from automodel.checkpoint import (
    build_checkpointer,
    config_fingerprint,
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
from automodel.data import build_dataloader as make_dataloader
from automodel.data import fast_forward
from automodel.data.llm import default_collater, pack_dataset, packed_collater
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
    defer_weights,
    load_tokenizer,
    materialize_model,
    pending_weights,
    training_flops_per_token,
)
from automodel.recipes.llm.adapters import (
    add_adapters,
    build_peft,
    gather_adapter,
    quantize_base,
    save_base_model,
    write_adapter,
    write_merged_model,
)
from automodel.recipes.llm.checkpointing import build_checkpoint_config, restore_from
from automodel.recipes.llm.schema import LOGGING, TRAIN_FT, TRAIN_FT_REQUIRED
from automodel.training import (
    MISPLACED_TRACKERS,
    TRACKERS,
    BaseRecipe,
    FinetuneLoop,
    JsonlWriter,
    MaskedCrossEntropy,
    ProgressReporter,
    StepScheduler,
    build_trackers,
    generation_exact_match,
    main_reporting_user_errors,
    measure_peak_tflops,
    set_seed,
)
from automodel.training import run_recipe as run_training_recipe

# This route's config, as `automodel <command> <domain> --help` lists it (read through the entry point).
SCHEMA, REQUIRED = TRAIN_FT, TRAIN_FT_REQUIRED


def build_model(cfg: ConfigNode, device: torch.device, section: str = "model") -> torch.nn.Module:
    """Build the ``model:`` section (a ``_target_`` such as AutoModelForCausalLM.from_pretrained), or the model
    section named ``section``, and return the model on ``device`` (left on the meta device when built inside
    ``defer_weights()``, for ``materialize_model``)."""
    model = build_section(cfg, section)
    return model if pending_weights(model) is not None else model.to(device)


def build_tokenizer(cfg: ConfigNode) -> Any:
    """Build the ``tokenizer:`` section, or load the tokenizer beside ``model.pretrained_model_name_or_path``."""
    if "tokenizer" in cfg:
        return build_section(cfg, "tokenizer")
    source = cfg.model.get("pretrained_model_name_or_path")
    if source is None:
        raise config_error(
            cfg,
            "the model is built from a config, so there is no tokenizer to load beside it",
            "model",
            "add a `tokenizer:` section (e.g. _target_: automodel.models.load_tokenizer)",
        )
    return load_tokenizer(source)


def _ids(value: Any) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def align_special_tokens(model: torch.nn.Module, tokenizer: Any) -> None:
    """Make the model's config and generation config agree with the tokenizer's bos/eos/pad ids.

    A model built from a config carries transformers' default ids, which need not be the
    tokenizer's; a saved checkpoint must carry the right ones so that ``generate`` stops at
    the tokenizer's EOS with no automodel code. A model whose eos list already holds the
    tokenizer's EOS (instruct models list several) is left as it is.
    """
    wanted = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    for target in (model.config, getattr(model, "generation_config", None)):
        if target is None:
            continue
        for name, token_id in wanted.items():
            if token_id is not None and token_id not in _ids(getattr(target, name, None)):
                setattr(target, name, token_id)


def build_dataset(cfg: ConfigNode, section: str, tokenizer: Any) -> Any:
    """Build a dataset section, handing it the tokenizer."""
    return build_section(cfg, section, tokenizer=tokenizer)


def build_dataloader(
    cfg: ConfigNode,
    dataset: Any,
    tokenizer: Any,
    batch_size: int,
    seed: int,
    training: bool = True,
    dp_rank: int = 0,
    dp_size: int = 1,
) -> Any:
    """Wrap ``dataset`` in a resumable dataloader with padding (or packing when ``packed_sequence.enabled``).

    Each of the ``dp_size`` data-parallel ranks reads its own part (``dp_rank``).
    """
    options = cfg.get("dataloader") or {}
    packing = cfg.get("packed_sequence") or {}
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if packing.get("enabled", False):
        dataset = pack_dataset(dataset, packing.get("packed_sequence_size", 2048), pad_token_id=pad_id)
        collate = packed_collater
    else:
        multiple = options.get("pad_to_multiple_of")
        collate = lambda batch: default_collater(batch, pad_token_id=pad_id, pad_to_multiple_of=multiple)  # noqa: E731
    return make_dataloader(
        dataset,
        batch_size=batch_size,
        collate_fn=collate,
        shuffle=bool(options.get("shuffle", True)) and training,
        seed=seed,
        dp_rank=dp_rank,
        dp_size=dp_size,
        num_workers=int(options.get("num_workers", 0)),
        drop_last=training,
    )


def build_optimizer(cfg: ConfigNode, model: torch.nn.Module) -> torch.optim.Optimizer:
    """Build the ``optimizer:`` section over the model's trainable parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    return build_section(cfg, "optimizer", params=params)


def build_loss_fn(cfg: ConfigNode, world_size: int = 1) -> Any:
    """Build ``loss_fn:`` (default: MaskedCrossEntropy) for a run of ``world_size`` processes.

    A loss that reads hidden states past the model's own forward (ChunkedCrossEntropy) is
    refused with several processes, whose sharded or wrapped model does not support that yet.
    """
    loss_fn = build_section(cfg, "loss_fn") if "loss_fn" in cfg else MaskedCrossEntropy()
    if getattr(loss_fn, "needs_hidden_states", False) and world_size > 1:
        raise config_error(
            cfg,
            f"{type(loss_fn).__name__} reads the decoder's hidden states past the model's own forward, which "
            "a model sharded or wrapped over several processes does not support yet",
            "loss_fn",
            "use automodel.training.MaskedCrossEntropy (the default) with several processes",
        )
    return loss_fn


def build_lr_scheduler(cfg: ConfigNode, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """Build ``lr_scheduler:`` with the optimizer and total step count, or None when absent."""
    if "lr_scheduler" not in cfg:
        return None
    return build_section(cfg, "lr_scheduler", optimizer=optimizer, total_steps=total_steps)


def build_parallelism(cfg: ConfigNode) -> Parallelism:
    """Validate ``distributed:``, join the launcher's process group and build the device mesh.

    One process with no ``distributed:`` section gets no process group; a launch with
    several processes and no section runs FSDP2 over all of them.
    """
    section = cfg.get("distributed")
    with errors_named_by(cfg, "distributed"):
        return setup_parallelism(section.to_container() if isinstance(section, ConfigNode) else section)


def compile_model(cfg: ConfigNode, model: torch.nn.Module) -> int:
    """Compile each transformer block of ``model`` (inside a DDP wrapper, if any) as ``compile:`` says.

    Returns how many blocks were compiled: 0 without the section or with ``enabled: false``.
    """
    section = cfg.get("compile")
    with errors_named_by(cfg, "compile"):
        config = parse_compile_config(section.to_container() if isinstance(section, ConfigNode) else section)
        return compile_blocks(unwrap_model(model), config)


def build_step_scheduler(cfg: ConfigNode, dataloader: Any, dp_size: int = 1) -> StepScheduler:
    """Build the StepScheduler from ``step_scheduler:`` (plain keys, not a ``_target_``)."""
    options = cfg.step_scheduler.to_container()
    try:
        return StepScheduler(dataloader, dp_size=dp_size, **options)
    except TypeError as exc:
        raise config_error(cfg, f"has a key StepScheduler does not take ({exc})", "step_scheduler") from None


def shards_before_weights(parallel: Parallelism, cfg: ConfigNode, peft: Any, writes_base: bool) -> bool:
    """Whether a run builds its model on the meta device and shards it before giving it weights.

    Under FSDP2 on several processes, except where a whole model is needed first: quantized
    base weights, DoRA (its magnitudes are norms of the base weights) and a LoRA run that writes
    its base model itself (``writes_base``: a model built from a config, saved for the adapter to name).

    Args:
        parallel: the run's Parallelism.
        cfg: the run's config (its ``quantization:`` section, if any).
        peft: the LoRAConfig, or None without adapters.
        writes_base: whether the run saves the base model it builds.

    Returns:
        True to build inside ``defer_weights`` and call ``materialize_model`` after sharding.
    """
    if parallel.env.world_size == 1 or parallel.config.strategy != "fsdp2" or "quantization" in cfg:
        return False
    return peft is None or not (peft.use_dora or writes_base)


class TrainFinetuneRecipeForNextTokenPrediction(FinetuneLoop):
    """Fine-tune (or pre-train) a causal LM on one process or many; see the module docstring."""

    def __init__(self, cfg: ConfigNode) -> None:
        self.cfg = cfg

    def setup(self) -> None:
        """Build model, tokenizer, data, optimizer, schedules, writers and trackers from the config."""
        refuse_moved_sections(self.cfg, MISPLACED_TRACKERS, "experiment trackers are set under `logging:`")
        check_config(self.cfg, TRAIN_FT, TRAIN_FT_REQUIRED, "train_ft", "examples/llm_finetune")
        peft_summary = self._setup_model()
        self._setup_training(peft_summary)

    def _setup_model(self) -> str | None:
        """Join the process group, seed, and build the tokenizer and the model (adapters added, sharded).

        Under FSDP2 on several processes the model (and its adapters) is built on the meta
        device, sharded, and only then given its weights: each rank holds and reads only its
        shards (``materialize_model``). Returns the PEFT summary line (None without ``peft:``).
        """
        cfg = self.cfg
        self.parallel = build_parallelism(cfg)
        self.device = self.parallel.device
        self.seed = set_seed(int(cfg.get("seed", 42)))
        self.tokenizer = build_tokenizer(cfg)
        self.checkpoint = build_checkpoint_config(cfg)
        self.peft = build_peft(cfg)
        self.base_model_path = cfg.model.get("pretrained_model_name_or_path")
        with defer_weights(self._shards_before_weights()):
            self.model = build_model(cfg, self.device)
            align_special_tokens(self.model, self.tokenizer)
            peft_summary = self._add_adapters() if self.peft is not None else None
        if self.peft is None and "quantization" in cfg:
            raise config_error(
                cfg,
                "quantized base weights train only with adapters",
                "quantization",
                "add a `peft:` section (QLoRA) or remove `quantization:`",
            )
        self.model = self.parallel.parallelize(self.model)
        self.load_report = materialize_model(unwrap_model(self.model), self.device)
        self.compiled_blocks = compile_model(cfg, self.model)
        return peft_summary

    def _shards_before_weights(self) -> bool:
        """Whether this run builds the model on the meta device and shards it before it gets its weights."""
        writes_base = self.base_model_path is None and self.checkpoint.enabled
        return shards_before_weights(self.parallel, self.cfg, self.peft, writes_base)

    def _add_adapters(self) -> str:
        """Write the base model a LoRA run builds from a config (for the adapter to name), quantize the base when
        asked, and add the adapters; return the PEFT summary line."""
        cfg = self.cfg
        if self.base_model_path is None and self.checkpoint.enabled:
            base = self.checkpoint.dir / "base_model"
            if self.parallel.is_rank0:
                save_base_model(self.model, self.tokenizer, base, self.checkpoint.max_shard_size)
            self.base_model_path = str(base)
        if "quantization" in cfg:
            quantize_base(self.model, cfg)
        summary = add_adapters(self.model, self.peft, cfg)
        if self.peft.save_merged and self.parallel.env.world_size > 1:
            raise config_error(
                cfg,
                "save_merged writes a merged copy of the whole model from one process, which a model sharded "
                "over several processes does not have",
                "peft",
                "set save_merged: false and merge the saved adapter afterwards (peft's merge_and_unload)",
            )
        return summary

    def _setup_training(self, peft_summary: str | None) -> None:
        """Build data, optimizer, schedules, loss, checkpointer (restoring a resumed run), writers and trackers."""
        cfg = self.cfg
        parallel = self.parallel
        local_batch_size = int(cfg.step_scheduler.get("local_batch_size", 1))
        self.dataset = build_dataset(cfg, "dataset", self.tokenizer)
        self.dataloader = build_dataloader(
            cfg,
            self.dataset,
            self.tokenizer,
            local_batch_size,
            self.seed,
            dp_rank=parallel.dp_rank,
            dp_size=parallel.dp_size,
        )
        self.val_dataset = (
            build_dataset(cfg, "validation_dataset", self.tokenizer) if "validation_dataset" in cfg else None
        )
        validation = cfg.get("validation") or {}
        self.val_dataloader = None
        if self.val_dataset is not None:
            val_batch = int(validation.get("batch_size", local_batch_size))
            self.val_dataloader = build_dataloader(
                cfg,
                self.val_dataset,
                self.tokenizer,
                val_batch,
                self.seed,
                training=False,
                dp_rank=parallel.dp_rank,
                dp_size=parallel.dp_size,
            )
        self.generation = self._generation_settings(validation)
        self.step_scheduler = build_step_scheduler(cfg, self.dataloader, parallel.dp_size)
        self.optimizer = parallel.prepare_optimizer(build_optimizer(cfg, self.model))
        self.lr_scheduler = build_lr_scheduler(cfg, self.optimizer, self.step_scheduler.max_steps)
        self.loss_fn = build_loss_fn(cfg, parallel.env.world_size)
        self.max_grad_norm = (cfg.get("clip_grad_norm") or {}).get("max_norm")
        self.checkpointer = build_checkpointer(self.checkpoint)
        resumed_from = self._restore()
        logging = plain_section(cfg, "logging", LOGGING)
        self.peak_tflops = logging.get("peak_tflops") or measure_peak_tflops(
            next(self.model.parameters()).dtype, self.device
        )
        self.progress = ProgressReporter(
            self.step_scheduler.max_steps,
            self.step_scheduler.step,
            enabled=parallel.is_rank0,
            bar=logging.get("progress_bar"),
        )
        if peft_summary is not None:
            self.progress.message(peft_summary)
        if parallel.env.world_size > 1:
            self.progress.message(parallel.describe())
        if self.load_report is not None:
            self.progress.message(self.load_report.describe())
        if self.compiled_blocks:
            self.progress.message(f"torch.compile: {self.compiled_blocks} blocks (compiled at their first call)")
        if resumed_from is not None:
            self.progress.message(f"resumed from {resumed_from} at step {self.step_scheduler.step}")
        self.training_log = JsonlWriter(self.checkpoint.dir / "training.jsonl")
        self.validation_log = JsonlWriter(self.checkpoint.dir / "validation.jsonl")
        with errors_named_by(cfg, "logging"):
            self.trackers = build_trackers(
                {name: logging[name] for name in TRACKERS if name in logging},
                run_dir=self.checkpoint.dir,
                config=redact_secrets(cfg.to_container(), cfg.to_container(resolve=False)),
                enabled=parallel.is_rank0,
                start_step=self.step_scheduler.step,
            )

    @property
    def hf_model(self) -> torch.nn.Module:
        """The Hugging Face model being trained (inside a DDP wrapper, if any)."""
        return unwrap_model(self.model)

    def _model_fingerprint(self) -> str:
        return config_fingerprint(self.hf_model.config.to_dict())

    def _generation_settings(self, validation: Any) -> dict | None:
        generation = validation.get("generation") if validation else None
        if generation is None or not generation.get("enabled", True):
            return None
        if self.val_dataset is None:
            raise config_error(self.cfg, "needs a `validation_dataset:` to generate from", "validation")
        settings = {"max_new_tokens": 32, "num_samples": 100, "batch_size": 32}
        settings.update(generation.to_container() if isinstance(generation, ConfigNode) else generation)
        settings.pop("enabled", None)
        count = min(int(settings.pop("num_samples")), len(self.val_dataset))
        samples = [self.val_dataset[i] for i in range(count)]
        if samples and "prompt_length" not in samples[0]:
            raise config_error(
                self.cfg, "generation needs a dataset with prompts (instruction or chat data)", "validation"
            )
        return {**settings, "samples": samples}

    def _restore_step_dir(self) -> Path | None:
        """``restore_from.path``, else this run's ``latest`` with ``checkpoint.auto_resume``, else None."""
        return restore_from(self.cfg, self.checkpointer, self.checkpoint)

    def _check_same_model(self, step_dir: Path) -> None:
        """Refuse a checkpoint of another architecture, naming the ``model:`` section."""
        where = location_of(self.cfg, "model")
        current = f"the `model:` section of {where[0]}" if where else "the `model:` section"
        self.checkpointer.check_same_model(step_dir, self._model_fingerprint(), current)

    def _fast_forward(self) -> None:
        """Move the dataloader to the step scheduler's epoch and sample (a resume under another layout)."""
        with errors_named_by(self.cfg, "distributed"):
            fast_forward(self.dataloader, self.step_scheduler.epoch, self.step_scheduler.samples_into_epoch)

    def _flops_per_token(self, seq_length: int) -> float:
        """The analytic training FLOPs per token of the model at ``seq_length``."""
        return training_flops_per_token(self.hf_model.config, seq_length)

    def _generation_metrics(self, step: int) -> dict:
        """Greedy-generation exact match on ``validation.generation`` samples (predictions to generations.jsonl)."""
        if self.generation is None:
            return {}
        settings = dict(self.generation)
        with self.parallel.generation(self.model) as model:
            result = generation_exact_match(
                model,
                self.tokenizer,
                settings.pop("samples"),
                device=self.device,
                synced_gpus=self.parallel.env.world_size > 1,
                **settings,
            )
        if self.parallel.is_rank0:
            JsonlWriter(self.checkpoint.dir / "generations.jsonl").write(
                {"step": step, "predictions": result["predictions"]}
            )
        return {"exact_match": result["exact_match"]}

    def _before_save(self) -> None:
        """Gather the LoRA adapter from the shards (every rank takes part) before a PEFT checkpoint."""
        self._adapter_state = gather_adapter(self.hf_model) if self.peft is not None else None

    def _saves_model_weights(self) -> bool:
        """A PEFT run's ``model/`` holds the adapter, not the full weights."""
        return self.peft is None

    def _extra_files(self) -> dict[str, str]:
        """The resolved config, secrets redacted, in each step folder."""
        return {"config.yaml": self.cfg.to_yaml(resolve=True, redact=True)}

    def _write_model_files(self, model_dir: Path) -> None:
        """Write config.json, generation_config.json and the tokenizer beside the weights.

        A PEFT run writes its adapter there instead (HF PEFT format) and, with
        ``peft.save_merged``, a full merged model in the step's ``merged/``.
        """
        if self.peft is not None:
            write_adapter(self.hf_model, model_dir, self.base_model_path, self._adapter_state)
            self.tokenizer.save_pretrained(model_dir)
            if self.peft.save_merged:
                write_merged_model(
                    self.model, self.tokenizer, model_dir.parent / "merged", self.checkpoint.max_shard_size
                )
            return
        write_model_metadata(self.hf_model, self.tokenizer, model_dir)

    def _farewell(self, last_step: Path | None) -> None:
        super()._farewell(last_step)
        if last_step is None:
            return
        model_dir = last_step / "model"
        if self.peft is None:
            how = (
                f"  from transformers import AutoModelForCausalLM, AutoTokenizer\n"
                f"  model = AutoModelForCausalLM.from_pretrained({str(model_dir)!r})\n"
                f"  tokenizer = AutoTokenizer.from_pretrained({str(model_dir)!r})"
            )
            self.progress.message(f"model saved to {model_dir}\nload it with transformers:\n{how}")
            return
        base = self.base_model_path or "<the base model>"
        how = (
            f"  from peft import PeftModel\n  from transformers import AutoModelForCausalLM\n"
            f"  model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained({str(base)!r}), "
            f"{str(model_dir)!r})"
        )
        merged = f"\nmerged model saved to {last_step / 'merged'}" if self.peft.save_merged else ""
        self.progress.message(f"adapter saved to {model_dir}{merged}\nload it with peft:\n{how}")


def run_recipe(recipe_class: type[BaseRecipe], cfg: ConfigNode | None = None) -> int:
    """Set up and run ``recipe_class`` on ``cfg`` (default: the config named by ``-c`` in sys.argv); return 0.

    The process group is destroyed afterwards, whether the run ends or fails.
    """
    cfg = load_config_from_argv() if cfg is None else cfg
    first = launcher_coordinates()[0] == 0
    return run_training_recipe(recipe_class, cfg, first_process=first, cleanup=destroy_distributed)


def main(cfg: ConfigNode | None = None) -> int:
    """Run train_ft on ``cfg`` (default: the config named by ``-c`` in sys.argv); return the exit status."""
    return run_recipe(TrainFinetuneRecipeForNextTokenPrediction, cfg)


if __name__ == "__main__":
    sys.exit(main_reporting_user_errors(main))

__all__ = [
    "TrainFinetuneRecipeForNextTokenPrediction",
    "align_special_tokens",
    "build_dataloader",
    "build_dataset",
    "build_loss_fn",
    "build_lr_scheduler",
    "build_model",
    "build_optimizer",
    "build_parallelism",
    "build_step_scheduler",
    "build_tokenizer",
    "compile_model",
    "main",
    "run_recipe",
]
