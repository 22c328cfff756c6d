"""FinetuneLoop: the step loop, validation, checkpoints and resume that every fine-tuning recipe shares.

A recipe subclasses it, builds its objects in ``setup()`` and fills in the hooks that need
other automodel packages (which this one may not import): how to find the step to resume
from, how to write the model files, the signal guard, the FLOPs per token. The loop reaches
everything else through the objects it is given, by protocol:

- ``self.parallel``: ``device``, ``env.world_size``, ``is_rank0``, ``dp_size``,
  ``sum_over_data_parallel()``, ``micro_batch_hook()``, ``reshard(model)``, ``any_rank(flag)``;
- ``self.checkpointer``: ``save``, ``load``, ``saved_world_size``, ``close``;
- ``self.checkpoint``: settings with ``dir``, ``enabled``, ``signals``, ``save_final``, ``auto_resume`` and
  ``signal_guard()``;
- ``self.model``, ``self.optimizer``, ``self.lr_scheduler``, ``self.loss_fn``, ``self.max_grad_norm``,
  ``self.step_scheduler``, ``self.dataloader``, ``self.val_dataloader``, ``self.progress``,
  ``self.training_log``, ``self.validation_log``, ``self.peak_tflops``;
- ``self.trackers``: ``log(metrics, step)`` and ``finish(last_checkpoint, failed=)`` (``build_trackers``);
  a recipe that sets none gets a ``Trackers`` that does nothing.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Any

import torch

from automodel.training.errors import TrainingError
from automodel.training.metrics import MetricsSample, model_flops_utilization, peak_memory_gib, truncate_history
from automodel.training.plots import LOSS_CURVES, plot_runs
from automodel.training.recipe import BaseRecipe
from automodel.training.step import train_step
from automodel.training.trackers import Trackers
from automodel.training.validation import validation_loss

RESUME_SKIPS = ("model", "optimizer", "val_dataloader")


class FinetuneLoop(BaseRecipe):
    """The shared run of a fine-tuning recipe; subclasses provide ``setup()`` and the hooks below."""

    throughput_label = "tps"
    """The progress line's name for ``MetricsSample.tps``: tokens per second, or a recipe's own unit."""

    trackers: Trackers = Trackers()
    """The experiment trackers every training and validation record also goes to; none by default."""

    @property
    def hf_model(self) -> torch.nn.Module:
        """The Hugging Face model being trained (inside a data-parallel wrapper, if any)."""
        raise NotImplementedError

    def run_train_validation_loop(self) -> None:
        """Train to the end of the schedule, validating, logging and saving on schedule.

        A signal listed in ``checkpoint.signals`` (SIGTERM, SIGUSR1) saves a checkpoint at the
        next step boundary and ends the run normally; the ranks agree on the step. The trackers
        finish when the run ends (marked failed when it ends on an exception).
        """
        try:
            last_step = self._run_schedule()
        except BaseException:
            self.trackers.finish(failed=True)
            raise
        self.trackers.finish(last_step)
        self._farewell(last_step)

    def _run_schedule(self) -> Path | None:
        """The steps of ``run_train_validation_loop``; return the last step folder written (None when none was)."""
        scheduler = self.step_scheduler
        if self.val_dataloader is not None and scheduler.step == 0:
            self._validate()
        tokens, started = 0, time.perf_counter()
        last_step: Path | None = None
        stopping = False
        with self._signal_guard() as stop:
            for micro_batches in scheduler:
                lr = self.optimizer.param_groups[0]["lr"]
                result = self._train_step(micro_batches)
                tokens += result.num_tokens
                if scheduler.is_log_step:
                    elapsed = time.perf_counter() - started
                    rows = max(1, sum(self._batch_rows(b) for b in micro_batches))
                    self._log(result, lr, self._summed(tokens) / elapsed, tokens / rows)
                    tokens, started = 0, time.perf_counter()
                if scheduler.is_val_step and self.val_dataloader is not None:
                    self._validate()
                final = scheduler.is_last_step and self.checkpoint.save_final
                due = final or (scheduler.is_ckpt_step and not scheduler.is_last_step)
                # A signal may reach the ranks at different steps; they stop together at the first.
                stopping = bool(self.checkpoint.signals) and self.parallel.any_rank(stop.requested)
                if self.checkpoint.enabled and (due or stopping):
                    last_step = self.save_checkpoint()
                if stopping:
                    saved = (
                        f"saved {last_step}"
                        if self.checkpoint.enabled
                        else "nothing saved (checkpoint.enabled is false)"
                    )
                    received = stop.signal or "a signal to another rank"
                    self.progress.message(f"{received} received: {saved}, stopping at step {scheduler.step}")
                    break
        self.checkpointer.close()
        if self.val_dataloader is not None and not scheduler.val_check_interval and not stopping:
            self._validate()
        self.progress.close()
        return last_step

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

    def _batch_rows(self, batch: dict) -> int:
        """The rows (sequences) of one micro-batch, for the tokens per row that MFU is counted at."""
        return len(batch["input_ids"])

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
        flops = self._flops_per_token(max(1, round(tokens_per_row)))
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
            record = {**sample.to_dict(), **(extra or {})}
            self.training_log.write(record)
            self.trackers.log(_tracked(record, "train/"), sample.step)
        self.progress.update(
            sample.step, {"loss": sample.loss, "lr": sample.lr, self.throughput_label: round(sample.tps)}
        )

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
        """Validate now: the metrics of ``_validation_metrics`` and ``_generation_metrics``, logged and shown."""
        step = self.step_scheduler.step
        record = {"step": step, **self._validation_metrics(), **self._generation_metrics(step)}
        self.parallel.reshard(self.model)
        if self.parallel.is_rank0:
            self.validation_log.write(record)
            self.trackers.log(_tracked(record, "val/"), step)
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
        self._before_save()
        return self.checkpointer.save(
            scheduler.step,
            model=self.model,
            optimizer=self.optimizer,
            stateful=self._resume_objects(),
            train_state=train_state,
            write_model_files=self._write_model_files,
            extra_files=self._extra_files(),
            model_weights=self._saves_model_weights(),
        )

    def _resume_objects(self) -> dict[str, Any]:
        """The tracked stateful attributes a checkpoint restores besides model and optimizer."""
        return {name: obj for name, obj in self.stateful_attributes().items() if name not in RESUME_SKIPS}

    def _restore(self) -> Path | None:
        """Resume from ``_restore_step_dir()``: weights, optimizer, schedules, data position and RNG.

        A checkpoint from another layout (world size or data-parallel size) restores all but the
        dataloader's own state, and ``_fast_forward()`` moves the data to the saved position.
        Returns the step folder, or None when the run starts afresh.
        """
        step_dir = self._restore_step_dir()
        if step_dir is None:
            if self.parallel.is_rank0:
                self._rewind_history(-1)  # a fresh run (or one overwriting the folder) starts a fresh history
            return None
        self._check_same_model(step_dir)
        stateful = self._resume_objects()
        saved = _read_train_state(step_dir / "train_state.json")
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
            self._fast_forward()
        self._rewind_history(int(state["step"]))
        return step_dir

    def _generation_metrics(self, step: int) -> dict:
        """Extra validation metrics (e.g. generation exact match) at ``step``; none by default."""
        return {}

    def _before_save(self) -> None:
        """Called on every rank before a checkpoint is written (e.g. to gather adapter weights)."""

    def _saves_model_weights(self) -> bool:
        """Whether ``model/`` holds the full weights (False when ``_write_model_files`` writes an adapter)."""
        return True

    def _extra_files(self) -> dict[str, str]:
        """Files (name -> text) written into each step folder, such as the resolved config."""
        return {}

    def _farewell(self, last_step: Path | None) -> None:
        """Called at the end with the last step written (None when none was): say how to load it.

        Here, on rank 0 of a run that wrote ``training.jsonl``: plot its metric history to
        ``<checkpoint.dir>/loss_curves.png`` and say so. A failure to plot is one message line,
        never the run's failure. A recipe overriding this calls ``super()._farewell(last_step)``.
        """
        run_dir = Path(self.checkpoint.dir)
        if not self.parallel.is_rank0 or not (run_dir / "training.jsonl").is_file():
            return
        try:
            written = plot_runs([run_dir], run_dir / LOSS_CURVES)
        except Exception as exc:  # the run has finished and saved: a plot must not turn it into a failure
            self.progress.message(f"loss curves not written: {type(exc).__name__}: {exc}")
            return
        self.progress.message(f"loss curves written to {written}")

    def _signal_guard(self) -> contextlib.AbstractContextManager:
        """A context whose value has ``requested`` (a signal arrived) and ``signal`` (its name):
        the checkpoint settings' ``signal_guard()``."""
        return self.checkpoint.signal_guard()

    def _flops_per_token(self, seq_length: int) -> float:
        """Training FLOPs per token at ``seq_length`` tokens per row, for MFU."""
        raise NotImplementedError

    def _model_fingerprint(self) -> str:
        """A fingerprint of the model's architecture, saved with each checkpoint."""
        raise NotImplementedError

    def _write_model_files(self, model_dir: Path) -> None:
        """Write the files beside the weights in ``model_dir`` (config, tokenizer or processor, adapter)."""
        raise NotImplementedError

    def _restore_step_dir(self) -> Path | None:
        """The step folder to resume from, or None to start afresh."""
        raise NotImplementedError

    def _check_same_model(self, step_dir: Path) -> None:
        """Raise a user error when ``step_dir`` holds another model than the one built."""
        raise NotImplementedError

    def _fast_forward(self) -> None:
        """Move the dataloader to the step scheduler's position (a resume under another layout)."""
        raise NotImplementedError

    def _rewind_history(self, last_step: int) -> None:
        """Drop the metric records after ``last_step`` (-1: all of them) from ``checkpoint.dir``."""
        truncate_history(self.checkpoint.dir, last_step)


def _tracked(record: dict, prefix: str) -> dict:
    """``record``'s fields named for the trackers (``train/loss``), but ``step`` (their x axis) and
    ``timestamp`` (they keep their own clock)."""
    return {f"{prefix}{key}": value for key, value in record.items() if key not in ("step", "timestamp")}


def _read_train_state(path: Path) -> dict:
    """Return the JSON object in a step's ``train_state.json``; a TrainingError naming it when it is not one."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TrainingError(
            f"{path} cannot be read as JSON ({exc}); the checkpoint is damaged: restore another step"
        ) from None
    if not isinstance(state, dict):
        raise TrainingError(
            f"{path} holds no object of training state; the checkpoint is damaged: restore another step"
        )
    return state
