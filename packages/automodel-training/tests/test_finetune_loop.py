"""FinetuneLoop on one process: it trains, logs, validates and saves on schedule, and stops on a signal.

The loop meets the checkpointer and the parallel layout only through their protocols; here they
are small in-test objects (the real ones live in packages this one may not import).
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import torch
from training_test_helpers import random_batch, tiny_llama

from automodel.training import FinetuneLoop, JsonlWriter, MaskedCrossEntropy, ProgressReporter, StepScheduler


class OneProcess:
    """The ``Parallelism`` protocol for a single process."""

    device = torch.device("cpu")
    env = SimpleNamespace(world_size=1)
    is_rank0, dp_size = True, 1

    def sum_over_data_parallel(self):
        return None

    def micro_batch_hook(self):
        return None

    def reshard(self, model):
        return None

    def any_rank(self, flag):
        return flag


class RecordingCheckpointer:
    """The checkpointer protocol, recording the steps saved."""

    def __init__(self, run_dir: Path):
        self.run_dir, self.saved, self.closed = run_dir, [], False

    def save(self, step, *, model, optimizer, stateful, train_state, write_model_files, extra_files, model_weights):
        self.saved.append((step, sorted(stateful), train_state["consumed_samples"], extra_files))
        return self.run_dir / f"step_{step:06d}"

    def close(self):
        self.closed = True


class Signal:
    """A signal guard whose signal arrives at a given step of the loop."""

    def __init__(self, recipe, at_step):
        self.recipe, self.at_step, self.signal = recipe, at_step, "SIGUSR1"

    @property
    def requested(self):
        return self.at_step is not None and self.recipe.step_scheduler.step >= self.at_step


class TinyRecipe(FinetuneLoop):
    """A recipe over 48 fixed rows for a tiny Llama: 12 steps of 4 rows, checkpointing every 4 steps."""

    def __init__(self, run_dir: Path, signal_at: int | None = None):
        self.run_dir, self.signal_at, self.farewell = run_dir, signal_at, "not called"

    def setup(self):
        batches = [random_batch([7, 7, 7, 7], seed=seed) for seed in range(12)]
        rows = [{key: value[i] for key, value in batch.items()} for batch in batches for i in range(4)]
        self.model = tiny_llama()
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=1e-2)
        self.lr_scheduler, self.loss_fn, self.max_grad_norm = None, MaskedCrossEntropy(), 1.0
        self.dataloader = torch.utils.data.DataLoader(rows, batch_size=2, collate_fn=_stack)
        self.step_scheduler = StepScheduler(
            self.dataloader, global_batch_size=4, local_batch_size=2, max_steps=12, checkpoint_interval=4
        )
        self.val_dataloader = [random_batch([6, 6], seed=9)]
        self.device, self.parallel = torch.device("cpu"), OneProcess()
        self.checkpoint = SimpleNamespace(signals=("SIGUSR1",), enabled=True, save_final=True, auto_resume=False)
        self.checkpointer = RecordingCheckpointer(self.run_dir)
        self.progress = ProgressReporter(12, bar=False, stream=io.StringIO())
        self.training_log = JsonlWriter(self.run_dir / "training.jsonl")
        self.validation_log = JsonlWriter(self.run_dir / "validation.jsonl")
        self.peak_tflops = 1.0

    @property
    def hf_model(self):
        return self.model

    def _signal_guard(self):
        return contextlib.nullcontext(Signal(self, self.signal_at))

    def _flops_per_token(self, seq_length):
        return 1e6

    def _model_fingerprint(self):
        return "tiny"

    def _write_model_files(self, model_dir):
        return None

    def _extra_files(self):
        return {"config.yaml": "seed: 1\n"}

    def _farewell(self, last_step):
        self.farewell = last_step


def _stack(rows):
    return {key: torch.stack([row[key] for row in rows]) for key in rows[0]}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_loop_trains_logs_validates_and_saves_on_schedule(tmp_path):
    recipe = TinyRecipe(tmp_path)
    recipe.setup()
    recipe.run_train_validation_loop()
    assert [step for step, *_ in recipe.checkpointer.saved] == [4, 8, 12]
    _, stateful, consumed, extra = recipe.checkpointer.saved[-1]
    assert (consumed, extra) == (48, {"config.yaml": "seed: 1\n"})
    assert "step_scheduler" in stateful and "model" not in stateful and "optimizer" not in stateful
    training = _records(tmp_path / "training.jsonl")
    assert [r["step"] for r in training] == list(range(1, 13)) and training[-1]["loss"] < training[0]["loss"]
    validation = _records(tmp_path / "validation.jsonl")
    assert [r["step"] for r in validation] == [0, 12] and validation[-1]["val_loss"] < validation[0]["val_loss"]
    assert recipe.checkpointer.closed and recipe.farewell == tmp_path / "step_000012"


def test_a_signal_saves_at_the_next_step_and_ends_the_run(tmp_path):
    recipe = TinyRecipe(tmp_path, signal_at=6)
    recipe.setup()
    recipe.run_train_validation_loop()
    assert [step for step, *_ in recipe.checkpointer.saved] == [4, 6]
    assert recipe.farewell == tmp_path / "step_000006"
