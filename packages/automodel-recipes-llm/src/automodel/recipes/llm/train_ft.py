"""train_ft: supervised fine-tuning and pre-training of causal language models.

    automodel finetune llm -c cfg.yaml          (or pretrain llm)
    python -m automodel.recipes.llm.train_ft -c cfg.yaml [--section.key VALUE ...]

The recipe reads top to bottom like the run: builders turn YAML sections into objects,
``setup()`` wires them in the order of DESIGN.md section 3, and the loop runs optimizer
steps, logging, validation and checkpoints on the step scheduler's schedule.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from automodel.checkpoint import (
    SaveOnSignal,
    build_checkpointer,
    config_fingerprint,
    truncate_history,
    write_model_metadata,
)
from automodel.config import (
    ConfigNode,
    build_section,
    check_sections,
    config_error,
    errors_named_by,
    load_config_from_argv,
    location_of,
)
from automodel.data import build_dataloader as make_dataloader
from automodel.data import fast_forward
from automodel.data.llm import default_collater, pack_dataset, packed_collater
from automodel.distributed import (
    Parallelism,
    any_rank,
    compile_blocks,
    destroy_distributed,
    launcher_coordinates,
    parse_compile_config,
    setup_parallelism,
    unwrap_model,
)
from automodel.models import load_tokenizer, training_flops_per_token
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
from automodel.training import (
    BaseRecipe,
    JsonlWriter,
    MaskedCrossEntropy,
    MetricsSample,
    ProgressReporter,
    StepScheduler,
    generation_exact_match,
    main_reporting_user_errors,
    measure_peak_tflops,
    model_flops_utilization,
    peak_memory_gib,
    set_seed,
    train_step,
    validation_loss,
)
from automodel.training import run_recipe as run_training_recipe

SECTIONS = {
    "recipe",
    "target_allowlist",
    "slurm",
    "k8s",
    "seed",
    "model",
    "tokenizer",
    "dataset",
    "validation_dataset",
    "dataloader",
    "packed_sequence",
    "compile",
    "loss_fn",
    "optimizer",
    "lr_scheduler",
    "step_scheduler",
    "clip_grad_norm",
    "checkpoint",
    "restore_from",
    "peft",
    "quantization",
    "validation",
    "logging",
    "distributed",
}
REQUIRED = ("model", "dataset", "optimizer", "step_scheduler")


def build_model(cfg: ConfigNode, device: torch.device, section: str = "model") -> torch.nn.Module:
    """Build the ``model:`` section (a ``_target_`` such as AutoModelForCausalLM.from_pretrained), or the model
    section named ``section``, and return the model on ``device``."""
    return build_section(cfg, section).to(device)


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


class TrainFinetuneRecipeForNextTokenPrediction(BaseRecipe):
    """Fine-tune (or pre-train) a causal LM on one process or many; see the module docstring."""

    def __init__(self, cfg: ConfigNode) -> None:
        self.cfg = cfg

    def setup(self) -> None:
        """Build model, tokenizer, data, optimizer, schedules and writers from the config."""
        check_sections(self.cfg, SECTIONS, REQUIRED, "train_ft", "examples/llm_finetune")
        peft_summary = self._setup_model()
        self._setup_training(peft_summary)

    def _setup_model(self) -> str | None:
        """Join the process group, seed, and build the tokenizer and the model (adapters added, sharded).

        Returns the PEFT summary line (None without ``peft:``).
        """
        cfg = self.cfg
        self.parallel = build_parallelism(cfg)
        self.device = self.parallel.device
        self.seed = set_seed(int(cfg.get("seed", 42)))
        self.tokenizer = build_tokenizer(cfg)
        self.model = build_model(cfg, self.device)
        align_special_tokens(self.model, self.tokenizer)
        self.checkpoint = build_checkpoint_config(cfg)
        self.peft = build_peft(cfg)
        self.base_model_path = cfg.model.get("pretrained_model_name_or_path")
        peft_summary = None
        if self.peft is not None:
            if self.base_model_path is None and self.checkpoint.enabled:
                base = self.checkpoint.dir / "base_model"
                if self.parallel.is_rank0:
                    save_base_model(self.model, self.tokenizer, base, self.checkpoint.max_shard_size)
                self.base_model_path = str(base)
            if "quantization" in cfg:
                quantize_base(self.model, cfg)
            peft_summary = add_adapters(self.model, self.peft, cfg)
            if self.peft.save_merged and self.parallel.env.world_size > 1:
                raise config_error(
                    cfg,
                    "save_merged writes a merged copy of the whole model from one process, which a model sharded "
                    "over several processes does not have",
                    "peft",
                    "set save_merged: false and merge the saved adapter afterwards (peft's merge_and_unload)",
                )
        elif "quantization" in cfg:
            raise config_error(
                cfg,
                "quantized base weights train only with adapters",
                "quantization",
                "add a `peft:` section (QLoRA) or remove `quantization:`",
            )
        self.model = self.parallel.parallelize(self.model)
        self.compiled_blocks = compile_model(cfg, self.model)
        return peft_summary

    def _setup_training(self, peft_summary: str | None) -> None:
        """Build data, optimizer, schedules, loss, checkpointer (restoring a resumed run) and writers."""
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
        logging = cfg.get("logging") or {}
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
        if self.compiled_blocks:
            self.progress.message(f"torch.compile: {self.compiled_blocks} blocks (compiled at their first call)")
        if resumed_from is not None:
            self.progress.message(f"resumed from {resumed_from} at step {self.step_scheduler.step}")
        self.training_log = JsonlWriter(self.checkpoint.dir / "training.jsonl")
        self.validation_log = JsonlWriter(self.checkpoint.dir / "validation.jsonl")

    @property
    def hf_model(self) -> torch.nn.Module:
        """The Hugging Face model being trained (inside a DDP wrapper, if any)."""
        return unwrap_model(self.model)

    def _resume_objects(self) -> dict[str, Any]:
        """The tracked stateful attributes a checkpoint restores besides model and optimizer."""
        skip = {"model", "optimizer", "val_dataloader"}
        return {name: obj for name, obj in self.stateful_attributes().items() if name not in skip}

    def _model_fingerprint(self) -> str:
        return config_fingerprint(self.hf_model.config.to_dict())

    def _restore(self) -> Path | None:
        """Resume from ``restore_from`` (or ``checkpoint.auto_resume``): weights, optimizer, schedules, data, RNG."""
        step_dir = restore_from(self.cfg, self.checkpointer, self.checkpoint)
        if step_dir is None:
            if self.checkpoint.auto_resume and self.parallel.is_rank0:
                truncate_history(self.checkpoint.dir, -1)  # a restart before the first checkpoint starts afresh
            return None
        where = location_of(self.cfg, "model")
        current = f"the `model:` section of {where[0]}" if where else "the `model:` section"
        self.checkpointer.check_same_model(step_dir, self._model_fingerprint(), current)
        stateful = self._resume_objects()
        saved = json.loads((step_dir / "train_state.json").read_text(encoding="utf-8"))
        same_layout = (
            self.checkpointer.saved_world_size(step_dir) == self.parallel.env.world_size
            and saved.get("dp_size", 1) == self.parallel.dp_size
        )
        if not same_layout:
            stateful.pop("dataloader")
        state = self.checkpointer.load(
            step_dir,
            model=self.model,
            optimizer=self.optimizer,
            stateful=stateful,
            replicated=[name for name in stateful if name != "dataloader"],
        )
        if not same_layout:
            with errors_named_by(self.cfg, "distributed"):
                fast_forward(self.dataloader, self.step_scheduler.epoch, self.step_scheduler.samples_into_epoch)
        truncate_history(self.checkpoint.dir, int(state["step"]))
        return step_dir

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

    def run_train_validation_loop(self) -> None:
        """Train to the end of the schedule, validating, logging and saving on schedule.

        A signal listed in ``checkpoint.save_on_signal`` (SIGTERM, SIGUSR1) saves a checkpoint
        at the next step boundary and ends the run normally.
        """
        scheduler = self.step_scheduler
        if self.val_dataloader is not None and scheduler.step == 0:
            self._validate()
        tokens, started = 0, time.perf_counter()
        last_step: Path | None = None
        stopping = False
        with SaveOnSignal(self.checkpoint.signals) as stop:
            for micro_batches in scheduler:
                lr = self.optimizer.param_groups[0]["lr"]
                result = self._train_step(micro_batches)
                tokens += result.num_tokens
                if scheduler.is_log_step:
                    elapsed = time.perf_counter() - started
                    rows = max(1, sum(len(b["input_ids"]) for b in micro_batches))
                    self._log(result, lr, self._summed(tokens) / elapsed, tokens / rows)
                    tokens, started = 0, time.perf_counter()
                if scheduler.is_val_step and self.val_dataloader is not None:
                    self._validate()
                final = scheduler.is_last_step and self.checkpoint.save_final
                due = final or (scheduler.is_ckpt_step and not scheduler.is_last_step)
                # A signal may reach the ranks at different steps; they stop together at the first.
                stopping = bool(self.checkpoint.signals) and any_rank(stop.requested, self.device)
                if self.checkpoint.enabled and (due or stopping):
                    last_step = self.save_checkpoint()
                if stopping:
                    self.progress.message(
                        f"{stop.signal or 'a signal to another rank'} received: saved {last_step}, "
                        f"stopping at step {scheduler.step}"
                    )
                    break
        self.checkpointer.close()
        if self.val_dataloader is not None and not scheduler.val_check_interval and not stopping:
            self._validate()
        self.progress.close()
        self._farewell(last_step)

    def _train_step(self, micro_batches: list[dict]) -> Any:
        """Run one optimizer step over ``micro_batches``; return its StepResult."""
        return train_step(
            self.model,
            micro_batches,
            self.loss_fn,
            self.optimizer,
            lr_scheduler=self.lr_scheduler,
            max_grad_norm=self.max_grad_norm,
            device=self.device,
            all_reduce=self.parallel.sum_over_data_parallel(),
            prepare_micro_batch=self._micro_batch_hook(),
        )

    def _micro_batch_hook(self) -> Any:
        """The per-micro-batch context (loss over sharded logits, context parallelism), None when not needed."""
        return self.parallel.micro_batch_hook()

    def _summed(self, count: int) -> int:
        """``count`` summed over the data-parallel ranks (this rank's count alone for one process)."""
        reduce = self.parallel.sum_over_data_parallel()
        if reduce is None:
            return count
        return int(reduce(torch.tensor(count, device=self.device)))

    def _log(self, result: Any, lr: float, tps: float, tokens_per_row: float, extra: dict | None = None) -> None:
        """Write one MetricsSample and the ``extra`` fields (rank 0), and update the progress line.

        ``tps`` counts every rank's tokens.
        """
        flops = training_flops_per_token(self.hf_model.config, max(1, round(tokens_per_row)))
        sample = MetricsSample(
            step=self.step_scheduler.step,
            epoch=self.step_scheduler.epoch,
            loss=result.loss,
            grad_norm=result.grad_norm,
            lr=lr,
            mem=peak_memory_gib(self.device),
            tps=tps,
            mfu=model_flops_utilization(tps, flops, self.peak_tflops * self.parallel.env.world_size),
        )
        if self.parallel.is_rank0:
            self.training_log.write({**sample.to_dict(), **(extra or {})})
        self.progress.update(sample.step, {"loss": sample.loss, "lr": sample.lr, "tps": round(sample.tps)})

    def _validation_metrics(self) -> dict:
        """Return ``val_loss``, ``val_ppl`` and ``val_tokens`` of the model over the validation set."""
        return validation_loss(
            self.model,
            self.val_dataloader,
            self.loss_fn,
            self.device,
            all_reduce=self.parallel.sum_over_data_parallel(),
            prepare_micro_batch=self._micro_batch_hook(),
        )

    def _validate(self) -> dict:
        step = self.step_scheduler.step
        record = {"step": step, **self._validation_metrics()}
        if self.generation is not None:
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
            record["exact_match"] = result["exact_match"]
            if self.parallel.is_rank0:
                JsonlWriter(self.checkpoint.dir / "generations.jsonl").write(
                    {"step": step, "predictions": result["predictions"]}
                )
        self.parallel.reshard(self.model)
        if self.parallel.is_rank0:
            self.validation_log.write(record)
        shown = ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k not in {"step", "val_tokens"})
        self.progress.message(f"validation at step {step}: {shown}")
        return record

    def save_checkpoint(self) -> Path:
        """Write the current step's checkpoint (model/ in HF layout plus everything to resume) and return it."""
        scheduler = self.step_scheduler
        train_state = {
            "epoch": scheduler.epoch,
            "consumed_samples": scheduler.step * scheduler.global_batch_size,
            "dp_size": self.parallel.dp_size,
            "model_config_fingerprint": self._model_fingerprint(),
        }
        self._adapter_state = gather_adapter(self.hf_model) if self.peft is not None else None
        return self.checkpointer.save(
            scheduler.step,
            model=self.model,
            optimizer=self.optimizer,
            stateful=self._resume_objects(),
            train_state=train_state,
            write_model_files=self._write_model_files,
            extra_files={"config.yaml": self.cfg.to_yaml(resolve=True, redact=True)},
            model_weights=self.peft is None,
        )

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
