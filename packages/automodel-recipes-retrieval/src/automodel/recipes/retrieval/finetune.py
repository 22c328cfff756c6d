"""finetune: contrastive fine-tuning of bi-encoders and reranking fine-tuning of cross-encoders.

    automodel finetune retrieval -c cfg.yaml
    python -m automodel.recipes.retrieval.finetune -c cfg.yaml [--section.key VALUE ...]

The kind of run follows from ``model:``: ``automodel.models.AutoModelBiEncoder`` trains an
embedding model with InfoNCE over in-batch and hard negatives (``loss_fn:`` default
``automodel.training.InfoNCELoss``) and validates nDCG@10, MRR@10, recall and MAP over a
held-out corpus (``validation_dataset:`` a BEIR folder); ``automodel.models.AutoModelCrossEncoder``
trains a reranker (default ``automodel.training.RerankBCELoss``) and validates accuracy@1 and
MRR over held-out groups. The step loop, checkpoints and resume are automodel-training's
``FinetuneLoop``, shared with the LLM and VLM recipes. Each step's ``model/`` loads in
``sentence_transformers.SentenceTransformer`` or ``CrossEncoder`` with no automodel code.
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
from automodel.data.retrieval import BiEncoderCollator, CrossEncoderCollator, RetrievalEvalSet
from automodel.distributed import (
    Parallelism,
    destroy_distributed,
    launcher_coordinates,
    setup_parallelism,
    unwrap_model,
)
from automodel.models import BiEncoder, load_tokenizer, training_flops_per_token, write_cross_encoder_files
from automodel.peft import adapter_state_dict
from automodel.recipes.retrieval.adapters import (
    add_adapters,
    base_model_source,
    build_peft,
    save_base_model,
    write_adapter,
)
from automodel.recipes.retrieval.evaluation import evaluate_bi_encoder, evaluate_reranker
from automodel.recipes.retrieval.schema import FINETUNE, FINETUNE_REQUIRED, LOGGING
from automodel.training import (
    MISPLACED_TRACKERS,
    TRACKERS,
    FinetuneLoop,
    InfoNCELoss,
    JsonlWriter,
    ProgressReporter,
    RerankBCELoss,
    StepScheduler,
    build_trackers,
    contrastive_train_step,
    main_reporting_user_errors,
    measure_peak_tflops,
    rerank_train_step,
    set_seed,
)
from automodel.training import run_recipe as run_training_recipe

# This route's config, as `automodel <command> <domain> --help` lists it (read through the entry point).
SCHEMA, REQUIRED = FINETUNE, FINETUNE_REQUIRED

COLLATE_KEYS = ("query_max_length", "passage_max_length", "max_length", "pad_to_multiple_of")
DEFAULT_K_VALUES = (1, 10, 100)


def build_tokenizer(cfg: ConfigNode, model: torch.nn.Module) -> Any:
    """Build the ``tokenizer:`` section, or load the tokenizer beside the folder or hub id ``model`` came from."""
    if "tokenizer" in cfg:
        return build_section(cfg, "tokenizer")
    source = getattr(model.config, "_name_or_path", None)
    if not source:
        raise config_error(
            cfg,
            "the model is built from a config, so there is no tokenizer to load beside it",
            "model",
            "add a `tokenizer:` section (e.g. _target_: automodel.models.load_tokenizer)",
        )
    with errors_named_by(cfg, "model"):
        return load_tokenizer(source)


def build_step_scheduler(cfg: ConfigNode, dataloader: Any, dp_size: int) -> StepScheduler:
    """Build the StepScheduler from ``step_scheduler:`` (plain keys)."""
    with errors_named_by(cfg, "step_scheduler"):
        return StepScheduler(dataloader, dp_size=dp_size, **cfg.step_scheduler.to_container())


def k_values_of(cfg: ConfigNode) -> tuple[int, ...]:
    """``validation.k_values`` as a tuple of positive cut-offs (default 1, 10, 100)."""
    values = plain_section(cfg, "validation", ("batch_size", "k_values")).get("k_values", DEFAULT_K_VALUES)
    if not isinstance(values, (list, tuple)) or not values or not all(type(v) is int and v > 0 for v in values):
        raise config_error(cfg, f"k_values must be a list of positive whole numbers, not {values!r}", "validation")
    return tuple(values)


class FinetuneRecipeForRetrieval(FinetuneLoop):
    """Fine-tune a bi-encoder or a cross-encoder on one process or many; see the module docstring."""

    def __init__(self, cfg: ConfigNode) -> None:
        self.cfg = cfg

    def setup(self) -> None:
        """Build model, tokenizer, data, loss, optimizer, schedules and writers from the config; resume if asked."""
        cfg = self.cfg
        refuse_moved_sections(cfg, MISPLACED_TRACKERS, "experiment trackers are set under `logging:`")
        check_config(cfg, FINETUNE, FINETUNE_REQUIRED, "finetune (retrieval)", "examples/retrieval")
        self.parallel = self._build_parallelism()
        self.device = self.parallel.device
        self.seed = set_seed(int(cfg.get("seed", 42)))
        model = build_section(cfg, "model")
        self.tokenizer = build_tokenizer(cfg, model)
        self.bi_encoder = isinstance(model, BiEncoder)
        self.k_values = k_values_of(cfg)
        self.collate = plain_section(cfg, "collate", COLLATE_KEYS)
        self.gradient_cache = plain_section(cfg, "gradient_cache", ("chunk_size",)).get("chunk_size")
        if self.gradient_cache and not self.bi_encoder:
            raise config_error(cfg, "applies to bi-encoders only", "gradient_cache", "remove the section")
        self.checkpoint = CheckpointSettings.from_options(plain_section(cfg, "checkpoint", CHECKPOINT_KEYS))
        peft_summary = self._add_adapters(model)
        self.model = self.parallel.parallelize(model.to(self.device))
        self._setup_data()
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = self.parallel.prepare_optimizer(build_section(cfg, "optimizer", params=params))
        self.lr_scheduler = None
        if "lr_scheduler" in cfg:
            total = self.step_scheduler.max_steps
            self.lr_scheduler = build_section(cfg, "lr_scheduler", optimizer=self.optimizer, total_steps=total)
        self.loss_fn = self._build_loss()
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
        kind = "bi-encoder" if self.bi_encoder else "cross-encoder"
        self.progress.message(f"{kind}: {type(self.loss_fn).__name__}")
        if peft_summary is not None:
            self.progress.message(peft_summary)
        if self.parallel.env.world_size > 1:
            self.progress.message(self.parallel.describe())
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

    def _add_adapters(self, model: torch.nn.Module) -> str | None:
        """Add the ``peft:`` section's LoRA adapters to a bi-encoder's backbone; return the summary line or None.

        A backbone built from a config is saved once to ``<checkpoint.dir>/base_model`` for the adapter to name.
        """
        self.peft = build_peft(self.cfg, model)
        if self.peft is None:
            return None
        self.base_model_path = base_model_source(model)
        if self.base_model_path is None and self.checkpoint.enabled:
            base = self.checkpoint.dir / "base_model"
            if self.parallel.is_rank0:
                save_base_model(model, self.tokenizer, base)
            self.base_model_path = str(base)
        return add_adapters(model, self.peft, self.cfg)

    def _build_parallelism(self) -> Parallelism:
        section = self.cfg.get("distributed")
        with errors_named_by(self.cfg, "distributed"):
            parallel = setup_parallelism(section.to_container() if isinstance(section, ConfigNode) else section)
        if parallel.sizes.tp > 1 or parallel.sizes.cp > 1:
            raise config_error(
                self.cfg,
                "tensor and context parallelism do not apply to retrieval models",
                "distributed",
                "use strategy fsdp2 or ddp with tp_size and cp_size 1",
            )
        return parallel

    def _build_loss(self) -> Any:
        """``loss_fn:`` (default InfoNCELoss for a bi-encoder, RerankBCELoss for a cross-encoder)."""
        if "loss_fn" not in self.cfg:
            return InfoNCELoss() if self.bi_encoder else RerankBCELoss()
        loss_fn = build_section(self.cfg, "loss_fn")
        if isinstance(loss_fn, InfoNCELoss) != self.bi_encoder:
            kind = "a bi-encoder" if self.bi_encoder else "a cross-encoder"
            fit = "InfoNCELoss" if self.bi_encoder else "RerankBCELoss or ListwiseSoftmaxLoss"
            raise config_error(
                self.cfg,
                f"{type(loss_fn).__name__} does not train {kind}",
                "loss_fn",
                f"use automodel.training.{fit}",
            )
        return loss_fn

    def _setup_data(self) -> None:
        """Build the training data, this rank's dataloaders, the validation data and the step scheduler."""
        cfg, parallel = self.cfg, self.parallel
        options = plain_section(cfg, "dataloader", ("shuffle", "num_workers"))
        validation = plain_section(cfg, "validation", ("batch_size", "k_values"))
        local_batch_size = int(cfg.step_scheduler.get("local_batch_size", 1))
        collate = self._collate()

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

        self.dataset = build_section(cfg, "dataset")
        self.dataloader = loader(self.dataset, local_batch_size, training=True)
        self.val_batch_size = int(validation.get("batch_size", max(local_batch_size, 32)))
        self.eval_set = self.val_dataloader = None
        if "validation_dataset" in cfg:
            held_out = build_section(cfg, "validation_dataset")
            if self.bi_encoder != isinstance(held_out, RetrievalEvalSet):
                need = (
                    "a BEIR evaluation set (_target_: automodel.data.retrieval.load_retrieval_eval_set)"
                    if self.bi_encoder
                    else "held-out groups (_target_: automodel.data.retrieval.RetrievalDataset with n_negatives)"
                )
                raise config_error(cfg, f"must be {need}", "validation_dataset")
            if self.bi_encoder:
                self.eval_set = held_out
                self.val_dataloader = held_out  # the loop validates when it is set; _validation_metrics reads eval_set
            else:
                self.val_dataloader = loader(held_out, self.val_batch_size, training=False)
        self.step_scheduler = build_step_scheduler(cfg, self.dataloader, parallel.dp_size)

    def _collate(self) -> Any:
        """The bi-encoder collate (queries and passages apart, the model's prompts) or the cross-encoder's."""
        options = self.collate
        if not self.bi_encoder:
            return CrossEncoderCollator(self.tokenizer, max_length=int(options.get("max_length", 256)))
        model = self._inner_model()
        return BiEncoderCollator(
            self.tokenizer,
            query_max_length=int(options.get("query_max_length", 64)),
            passage_max_length=int(options.get("passage_max_length", model.max_seq_length or 256)),
            query_prompt=model.query_prompt,
            passage_prompt=model.passage_prompt,
            pad_to_multiple_of=options.get("pad_to_multiple_of"),
        )

    def _inner_model(self) -> torch.nn.Module:
        """The BiEncoder or Hugging Face model being trained (inside a DDP wrapper, if any)."""
        return unwrap_model(self.model)

    @property
    def hf_model(self) -> torch.nn.Module:
        """The model being trained, as saved (inside a DDP wrapper, if any)."""
        return self._inner_model()

    def _train_step(self, micro_batches: list[dict]) -> Any:
        """One optimizer step: contrastive for a bi-encoder, reranking for a cross-encoder."""
        common = {
            "lr_scheduler": self.lr_scheduler,
            "max_grad_norm": self.max_grad_norm,
            "device": self.device,
            "all_reduce": self.parallel.sum_over_data_parallel(),
        }
        if not self.bi_encoder:
            return rerank_train_step(self.model, micro_batches, self.loss_fn, self.optimizer, **common)
        inner = self._inner_model()
        return contrastive_train_step(
            self.model,
            micro_batches,
            self.loss_fn,
            self.optimizer,
            temperature=(lambda: inner.temperature) if inner.temperature is not None else None,
            gradient_cache_chunk=self.gradient_cache,
            **common,
        )

    def _batch_rows(self, batch: dict) -> int:
        """The sequences of a micro-batch: queries and passages, or (query, passage) pairs."""
        if "query_input_ids" in batch:
            return len(batch["query_input_ids"]) + len(batch["passage_input_ids"])
        return len(batch["input_ids"])

    def _validation_metrics(self) -> dict:
        """Retrieval metrics over the held-out corpus (bi-encoder) or reranking metrics over held-out groups."""
        if self.bi_encoder:
            return evaluate_bi_encoder(
                self._inner_model(),
                self.tokenizer,
                self.eval_set,
                query_max_length=int(self.collate.get("query_max_length", 64)),
                passage_max_length=int(self.collate.get("passage_max_length", 256)),
                batch_size=self.val_batch_size,
                k_values=self.k_values,
                device=self.device,
            )
        return evaluate_reranker(
            self._inner_model(),
            self.val_dataloader,
            device=self.device,
            all_reduce=self.parallel.sum_over_data_parallel(),
        )

    def _model_fingerprint(self) -> str:
        return config_fingerprint(self._inner_model().config.to_dict())

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
        """The encoder's training FLOPs per token: no LM head (vocab_size counted as 0); an encoder's MLP has
        two matrices where the count assumes a gated MLP's three (intermediate_size scaled by 2/3)."""
        config = self._inner_model().config.to_dict()
        if not config.get("is_decoder") and config.get("hidden_act") != "silu":
            config["intermediate_size"] = config.get("intermediate_size", 0) * 2 / 3
        config["vocab_size"] = 0
        try:
            return training_flops_per_token(config, seq_length)
        except (KeyError, TypeError, ValueError):
            return 0.0

    def _extra_files(self) -> dict[str, str]:
        return {"config.yaml": self.cfg.to_yaml(resolve=True, redact=True)}

    def _before_save(self) -> None:
        """Gather the LoRA adapter from the shards (every rank takes part) before a PEFT checkpoint."""
        self._adapter_state = adapter_state_dict(self._inner_model().backbone) if self.peft is not None else None

    def _saves_model_weights(self) -> bool:
        """A PEFT run's ``model/`` holds the adapter, not the full weights."""
        return self.peft is None

    def _write_model_files(self, model_dir: Path) -> None:
        """Write config.json, the tokenizer and the sentence-transformers files beside the weights (or, for a
        PEFT run, beside the adapter: sentence-transformers then loads the base model and applies it)."""
        model = self._inner_model()
        if self.peft is not None:
            write_adapter(model, model_dir, self.base_model_path, self._adapter_state)
            self.tokenizer.save_pretrained(model_dir)
            model.write_sentence_transformers_files(model_dir)
            return
        write_model_metadata(model, self.tokenizer, model_dir)
        if self.bi_encoder:
            model.write_sentence_transformers_files(model_dir)
        else:
            write_cross_encoder_files(model, model_dir, max_seq_length=int(self.collate.get("max_length", 256)))

    def _farewell(self, last_step: Path | None) -> None:
        super()._farewell(last_step)
        if last_step is None:
            return
        model_dir = str(last_step / "model")
        kind = "SentenceTransformer" if self.bi_encoder else "CrossEncoder"
        how = f"  from sentence_transformers import {kind}\n  model = {kind}({model_dir!r})"
        saved = "model" if self.peft is None else f"LoRA adapter (for {self.base_model_path}; loading needs peft)"
        self.progress.message(f"{saved} saved to {model_dir}\nload it with sentence-transformers:\n{how}")


def main(cfg: ConfigNode | None = None) -> int:
    """Run the retrieval fine-tuning recipe on ``cfg`` (default: the config named by ``-c`` in sys.argv); return 0."""
    cfg = load_config_from_argv() if cfg is None else cfg
    first = launcher_coordinates()[0] == 0
    return run_training_recipe(FinetuneRecipeForRetrieval, cfg, first_process=first, cleanup=destroy_distributed)


if __name__ == "__main__":
    sys.exit(main_reporting_user_errors(main))

__all__ = ["FinetuneRecipeForRetrieval", "build_step_scheduler", "build_tokenizer", "k_values_of", "main"]
