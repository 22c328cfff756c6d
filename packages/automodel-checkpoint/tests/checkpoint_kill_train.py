"""A training run that checkpoints every few steps and resumes from ``latest``: the kill test runs it in subprocesses.

Usage: python checkpoint_kill_train.py RUN_DIR --steps 12 --every 3 [--ballast N] [--async-save]
(the test calls ``main(argv)`` in processes forked from a server that has imported torch already).

It appends one JSON line per event to RUN_DIR/events.jsonl: ``{"resumed": step_dir}`` or
``{"started": true}``, ``{"step": s, "loss": x}`` after each step, ``{"signal": name,
"saved": step}`` when SIGTERM/SIGUSR1 stopped it (exit 0), ``{"done": true}`` at the end.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from checkpoint_test_helpers import Run, build_run, train

from automodel.checkpoint import Checkpointer, SaveOnSignal


def main(argv: list[str] | None = None) -> int:
    """Train to ``--steps``, resuming from RUN_DIR/ckpt/latest if there is one; return the exit status."""
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--every", type=int, default=3)
    parser.add_argument("--ballast", type=int, default=0)
    parser.add_argument("--async-save", action="store_true")
    args = parser.parse_args(argv)
    events = (args.run_dir / "events.jsonl").open("a", encoding="utf-8")

    def log(**event: object) -> None:
        events.write(json.dumps(event) + "\n")
        events.flush()

    run = build_run(ballast=args.ballast)
    checkpointer = Checkpointer(args.run_dir / "ckpt", keep_last_n=2, async_save=args.async_save)
    step_dir = checkpointer.resolve("latest", missing_ok=True)
    if step_dir is None:
        log(started=True)
    else:
        state = checkpointer.load(step_dir, model=run.model, optimizer=run.optimizer, stateful=run.stateful())
        run.step, run.epoch = state["step"], state["epoch"]
        log(resumed=str(step_dir))

    with SaveOnSignal() as stop:

        def after_step(run: Run, loss: float) -> bool:
            log(step=run.step, loss=loss)
            if run.step % args.every == 0 or run.step == args.steps or stop.requested:
                checkpointer.save(
                    run.step,
                    model=run.model,
                    optimizer=run.optimizer,
                    stateful=run.stateful(),
                    train_state={"epoch": run.epoch},
                )
            return stop.requested

        train(run, args.steps, after_step)
        checkpointer.close()
    if stop.requested:
        log(signal=stop.signal, saved=run.step)
        return 0
    log(done=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
