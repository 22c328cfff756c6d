"""A toy recipe: writes what it was given to ``output.dir/rank<R>.json``; can fail on request."""

from __future__ import annotations

import json
import os
from pathlib import Path

from automodel.config import BUILT, OWNED, anything, integer, text

# What `automodel finetune toy --help` lists (the toy itself checks nothing).
SCHEMA = {
    "recipe": text(),
    "slurm": OWNED,
    "behaviour": text(("ok", "user_error", "crash", "echo"), "what the toy does"),
    "value": anything("echoed by behaviour: echo"),
    "model": BUILT,
    "output": {"dir": text(describe="where rank<R>.json is written", nullable=False)},
    "exit_code": integer(0, "the exit status to return", default=0),
}
REQUIRED = ("output",)


class ToyError(ValueError):
    """A user mistake the toy recipe reports (follows the ``user_error`` protocol)."""

    user_error = True


def main(cfg) -> int:
    """Run the toy recipe on ``cfg``; return ``cfg.exit_code`` (default 0)."""
    behaviour = cfg.get("behaviour", "ok")
    if behaviour == "user_error":
        raise ToyError("toy: `behaviour` asked for a user error")
    if behaviour == "crash":
        raise RuntimeError("toy recipe crashed on purpose")
    if behaviour == "echo":
        raise ToyError(f"toy: `value` must be a number, got {cfg.value!r}")
    built = cfg.model.instantiate() if "model" in cfg else None
    out = Path(cfg.output.dir)
    out.mkdir(parents=True, exist_ok=True)
    rank = os.environ.get("RANK", "0")
    record = {
        "rank": int(rank),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "config": cfg.to_container(),
        "built": repr(built),
        "pid": os.getpid(),
    }
    (out / f"rank{rank}.json").write_text(json.dumps(record), encoding="utf-8")
    return int(cfg.get("exit_code", 0))
