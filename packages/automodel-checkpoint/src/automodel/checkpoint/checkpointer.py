"""Checkpointer: atomic step folders holding HF weights and everything needed to resume exactly."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
from collections.abc import Callable, Collection, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch.distributed.tensor import DTensor

from automodel.checkpoint import layout
from automodel.checkpoint.durable import fsync_dir, fsync_tree
from automodel.checkpoint.errors import CheckpointError, brief
from automodel.checkpoint.fingerprint import check_same_model
from automodel.checkpoint.hf_weights import save_hf_weights
from automodel.checkpoint.json_state import decode_state, encode_state, read_json_file
from automodel.checkpoint.manifest import (
    MANIFEST,
    check_step,
    corrupted_error,
    parse_verify,
    seal,
    step_files,
    write_manifest,
    writer_rank,
)
from automodel.checkpoint.options import parse_max_shard_size, parse_save_dtype
from automodel.checkpoint.process_group import (
    all_gather,
    barrier,
    broadcast_from_rank0,
    new_checkpoint_group,
    rank,
    world_size,
)
from automodel.checkpoint.resume_state import capture_resume_state, restore_resume_state, write_resume_state
from automodel.checkpoint.rng import capture_rng_state, restore_rng_state
from automodel.checkpoint.run_lock import RunDirLock, lock_run_dir
from automodel.checkpoint.tensors import CpuStager, materialize, unique_entries

_RESERVED = {layout.MODEL_DIR, layout.RESUME_DIR, layout.RNG_DIR, layout.TRAIN_STATE, layout.LATEST, MANIFEST}
# What a damaged or foreign state file makes load_state_dict, decode_state or the RNG setters raise.
_BAD_STATE = (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError, OverflowError)
logger = logging.getLogger(__name__)


@dataclass
class _Save:
    """One step's content, captured in the training thread, ready to be written."""

    final: Path
    partial: Path
    hf_weights: Mapping[str, torch.Tensor] | None
    resume: dict[str, Any]
    rng: str
    stateful: dict[str, str]
    train_state: str


class Checkpointer:
    """Writes and reads ``<dir>/step_000500/`` folders (DESIGN.md section 5) and the ``latest`` pointer.

    A step folder holds ``model/`` (consolidated HF safetensors, loadable by
    ``from_pretrained``), ``optim/`` (model and optimizer state in torch.distributed.checkpoint
    format, resharded on load), ``rng/rank{R}.json``, one ``<name>/rank{R}.json`` per stateful
    object, ``train_state.json`` and ``manifest.json`` (every file's size and xxh3_128
    checksum). It is written under a temporary name, flushed to the disk (files and folders)
    and renamed when complete; ``latest`` is replaced after that, so a run killed at any
    moment, or a machine that loses power, leaves only complete steps under their names.
    ``latest`` never moves back to an older step while a newer one exists. ``load`` checks
    the files against the manifest before reading any. With torch.distributed initialized
    every rank must construct it and call ``save``/``load`` together.

    Args:
        dir: the run's checkpoint folder.
        keep_last_n: keep only this many newest complete steps, never deleting the one ``latest``
            names; None keeps all.
        async_save: copy all state to CPU, return, and write in a background thread.
        max_shard_size: largest weight file of ``model/``: "5GB", "500MB", or bytes.
        save_dtype: cast floating weights of ``model/`` to "bf16", "fp16" or "fp32"; None keeps them.
            ``optim/`` always keeps the exact training dtype.
        verify: how ``load`` checks a step against its manifest: "full" (sizes and checksums of
            every file), "size" (sizes only: fast for huge checkpoints) or "off". A step saved
            before manifests existed (automodel-checkpoint < 0.4) loads with a logged warning.
        lock: take ``lock_run_dir(dir)`` (on rank 0) until ``close()``, so no other process can
            use the folder meanwhile. ``build_checkpointer`` sets it for every recipe run; several
            checkpointers of one process may share a folder.

    Raises:
        CheckpointError: a setting with an impossible value, ``dir`` is a file, or (with ``lock``)
            another process holds the folder.
    """

    def __init__(
        self,
        dir: str | os.PathLike[str],
        *,
        keep_last_n: int | None = None,
        async_save: bool = False,
        max_shard_size: str | int = "5GB",
        save_dtype: str | torch.dtype | None = None,
        verify: str = "full",
        lock: bool = False,
    ) -> None:
        if keep_last_n is not None and (type(keep_last_n) is not int or keep_last_n < 1):
            raise CheckpointError(
                f"keep_last_n is {keep_last_n!r}; use a whole number of at least 1, or null to keep every checkpoint"
            )
        parse_max_shard_size(max_shard_size)
        self.dir = Path(dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise CheckpointError(f"checkpoint dir {self.dir} is a file; set checkpoint.dir to a folder")
        self.keep_last_n = keep_last_n
        self.async_save = async_save
        self.max_shard_size = max_shard_size
        self.save_dtype = parse_save_dtype(save_dtype)
        self.verify = parse_verify(verify)
        self._group = new_checkpoint_group()
        self._lock: RunDirLock | None = None
        failure = None
        if lock and rank() == 0:
            try:
                self._lock = lock_run_dir(self.dir)
            except CheckpointError as error:
                failure = str(error)
        pid, failure = broadcast_from_rank0((os.getpid(), failure), self._group)
        if failure is not None:
            raise CheckpointError(failure)
        self._tag = str(pid)
        self._stager = CpuStager()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self._verified: Path | None = None

    def save(
        self,
        step: int,
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        stateful: Mapping[str, Any] | None = None,
        train_state: Mapping[str, Any] | None = None,
        write_model_files: Callable[[Path], None] | None = None,
        extra_files: Mapping[str, str] | None = None,
        model_weights: bool = True,
    ) -> Path:
        """Write ``<dir>/step_{step:06d}/`` and point ``latest`` at it.

        Args:
            step: the optimizer step just completed.
            model: its ``state_dict()`` becomes ``model/`` and, with the optimizer's, ``optim/``.
            optimizer: saved in ``optim/`` when given.
            stateful: ``{name: object with state_dict()/load_state_dict()}`` (LR scheduler, step
                scheduler, StatefulDataLoader, ...), each saved as ``<name>/rank{R}.json``.
            train_state: JSON values for ``train_state.json`` (epoch, consumed samples,
                ``model_config_fingerprint``, ...); ``step`` and ``timestamp`` are added.
            write_model_files: called on rank 0 with the ``model/`` folder to add config.json,
                generation_config.json, tokenizer files.
            extra_files: ``{file name: text}`` written by rank 0 into the step folder, such as
                ``config.yaml`` (the resolved config), so they appear with the rest, atomically.
            model_weights: False leaves the consolidated weights out of ``model/`` (a PEFT run
                writes its adapter there with ``write_model_files``); ``optim/`` still holds
                the full model state for resuming.

        Returns:
            The step folder. With ``async_save`` it exists once ``wait()`` returns.

        Raises:
            CheckpointError: a negative step, a stateful or extra file name that cannot be used,
                state that JSON cannot hold, or ``latest`` naming a newer step than ``step`` that
                still exists (another run saves into this folder, or this run went back to an
                older step): nothing is written then. Also a folder that cannot be written.
        """
        self.wait()
        if type(step) is not int or step < 0:
            raise CheckpointError(f"checkpoint step {step!r} is not a step number; pass the optimizer step, 0 or more")
        stateful, extra_files = dict(stateful or {}), dict(extra_files or {})
        for name in stateful:
            _check_name(name, "stateful name", name.isidentifier())
        for name in extra_files:
            _check_name(name, "extra_files name", re.fullmatch(r"[\w-][\w.-]*", name) is not None)
        clash = sorted(stateful.keys() & extra_files.keys())
        if clash:
            raise CheckpointError(f"extra_files and stateful both use the name {', '.join(clash)}; rename the file")
        resume = capture_resume_state(model, optimizer)
        job = _Save(
            final=self.dir / layout.step_dir_name(step),
            partial=layout.partial_dir(self.dir, step, self._tag),
            hf_weights=resume["model"] if model_weights else None,
            resume=resume,
            rng=json.dumps(capture_rng_state()),
            stateful={n: json.dumps(encode_state(o.state_dict(), f"stateful[{n!r}]")) for n, o in stateful.items()},
            train_state=_train_state_json(step, train_state or {}),
        )
        failure = None
        if rank() == 0:
            try:
                self._check_latest_is_not_newer(step)
                with _writing(self.dir):
                    self.dir.mkdir(parents=True, exist_ok=True)
                    layout.remove_partials(self.dir)
                    (job.partial / layout.MODEL_DIR).mkdir(parents=True)
                    if write_model_files is not None:
                        write_model_files(job.partial / layout.MODEL_DIR)
                    for name, text in extra_files.items():
                        _write_text(job.partial / name, text)
            except CheckpointError as error:
                failure = str(error)
        failure = broadcast_from_rank0(failure, self._group)  # also the barrier: the folder exists
        if failure is not None:
            raise CheckpointError(failure)
        if not self.async_save:
            self._write(job)
            return job.final
        self._stage(job)
        self._thread = threading.Thread(target=self._write_in_background, args=(job,), name="automodel-checkpoint")
        self._thread.start()
        return job.final

    def wait(self) -> None:
        """Block until a background save has finished; re-raise its error, if any."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def close(self) -> None:
        """Finish any background save (see ``wait``), then release the run-folder lock (see ``lock``)."""
        try:
            self.wait()
        finally:
            if self._lock is not None:
                self._lock.release()
                self._lock = None

    def latest(self) -> Path | None:
        """Return the step folder ``<dir>/latest`` names, or None when nothing was saved yet."""
        return layout.read_latest(self.dir)

    def resolve(self, restore_from: str | os.PathLike[str] | None, *, missing_ok: bool = False) -> Path | None:
        """Turn a ``restore_from`` setting into a complete step folder.

        Args:
            restore_from: ``"latest"``, a step folder (a path, or a name under ``dir`` such as
                ``step_000500``), or None (start fresh: returns None).
            missing_ok: with ``"latest"``, return None instead of raising when nothing was
                saved yet (an automatic resume that may be the first run).

        Raises:
            CheckpointError: the folder does not exist or is incomplete; the message lists the complete steps.
        """
        if restore_from is None:
            return None
        if os.fspath(restore_from) == layout.LATEST:
            latest = self.latest()
            if latest is None:
                if missing_ok:
                    return None
                raise CheckpointError(
                    f"restore_from is latest, but {self.dir} holds no checkpoint yet (no {self.dir / layout.LATEST}); "
                    "set restore_from: null to start fresh"
                )
            return self._complete(latest, f"restore_from latest names {latest}")
        path = Path(restore_from)
        if not path.exists() and not path.is_absolute() and (self.dir / path).exists():
            path = self.dir / path
        return self._complete(path, f"restore_from {path}")

    def load(
        self,
        step_dir: str | os.PathLike[str],
        *,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        stateful: Mapping[str, Any] | None = None,
        replicated: Collection[str] = (),
    ) -> dict[str, Any]:
        """Restore a step: model and optimizer exactly (from ``optim/``), stateful objects, then this rank's RNG.

        A run saved by N processes resumes on M: DCP reshards model and optimizer, and the
        stateful objects named in ``replicated`` (state that is the same on every rank, such
        as the LR and step schedulers) load rank 0's file when this rank has none. Per-rank
        state (a data loader's position) is not moved between ranks: leave it out of
        ``stateful`` and reposition it when ``saved_world_size`` differs from the current one.
        A rank without an RNG file of its own takes rank 0's RNG state.

        Args:
            step_dir: a complete step folder (see ``resolve``).
            model: receives the saved weights, resharded to its current layout.
            optimizer: receives the saved optimizer state when given.
            stateful: ``{name: object}`` as passed to ``save``; each loads this rank's file.
            replicated: names in ``stateful`` whose state is the same on every rank.

        Returns:
            The contents of ``train_state.json`` (with ``step``).

        Raises:
            CheckpointError: the folder is incomplete or corrupted (see ``verify_step``), does not
                match the model, or lacks this rank's files.
        """
        self.wait()
        path = self._complete(Path(step_dir), f"step folder {step_dir}")
        if path != self._verified:
            self.verify_step(path)
        self._verified = None
        train_state = read_json_file(path / layout.TRAIN_STATE)
        if not isinstance(train_state, dict):
            raise CheckpointError(
                f"{path / layout.TRAIN_STATE} holds {type(train_state).__name__}, not an object of training "
                "state; the checkpoint is corrupted: restore from another step"
            )
        restore_resume_state(path / layout.RESUME_DIR, model, optimizer, self._group)
        for name, obj in (stateful or {}).items():
            file = self._rank_file(path, name, from_rank0=name in replicated)
            with _loading(file, name):
                state = decode_state(read_json_file(file))
                _check_resembles(state, obj.state_dict())
                obj.load_state_dict(state)
        file = self._rank_file(path, layout.RNG_DIR, from_rank0=True)
        with _loading(file, "the random number generators"):
            restore_rng_state(read_json_file(file))
        return train_state

    def verify_step(self, step_dir: str | os.PathLike[str]) -> None:
        """Check a step's files against its ``manifest.json`` as ``verify`` says, before anything reads them.

        Every rank must call it together; the files are shared out among them. The next ``load``
        of the same step does not check it again (``restore_step`` verifies before the recipe
        reads ``train_state.json``, then ``load`` finds it done). A step without a manifest
        (saved before automodel-checkpoint 0.4) passes with a logged warning.

        Raises:
            CheckpointError: a listed file is missing, or its size or checksum differs, or
                ``optim/`` or a ``rank*.json`` folder holds a file the manifest does not list; the
                message names the files and the other complete steps to restore from.
        """
        path = self._complete(Path(step_dir), f"step folder {step_dir}")
        if self.verify == "off":
            return
        outcomes = all_gather(check_step(path, self.verify, rank(), world_size()), self._group)
        problems = [problem for outcome in outcomes if outcome for problem in outcome]
        if problems:
            raise corrupted_error(path, problems)
        if outcomes[0] is None and rank() == 0:
            logger.warning(
                "%s has no %s (saved by automodel-checkpoint before 0.4): loading it without checking its files",
                path,
                MANIFEST,
            )
        self._verified = path

    def discard_after(self, step_dir: str | os.PathLike[str] | None) -> list[Path]:
        """Delete the complete steps of ``dir`` newer than ``step_dir`` (every one when it is None or
        lies outside ``dir``), so that a run continuing from ``step_dir`` never sees them.

        Each step is moved aside before it is deleted, so none is ever seen half deleted.
        ``latest`` then names ``step_dir`` when it is a step of ``dir``, and is removed otherwise.
        Every rank must call it together; rank 0 deletes.

        Returns:
            The step folders deleted (on every rank).
        """
        start = None if step_dir is None else Path(step_dir)
        doomed = layout.steps_after(self.dir, start)
        if rank() == 0 and self.dir.is_dir():
            with _writing(self.dir):
                for old in doomed:
                    layout.discard(old, self._tag)
                keep = start is not None and start.parent.resolve() == self.dir.resolve()
                if keep and self.latest() != self.dir / start.name:
                    layout.write_latest(self.dir, start, self._tag)
                elif not keep:
                    layout.remove_latest(self.dir)
        barrier(self._group)
        return doomed

    def check_same_model(self, step_dir: str | os.PathLike[str], fingerprint: str, describe_current: str) -> None:
        """Raise a CheckpointError naming both configs when ``step_dir`` was saved from a different model.

        Args:
            step_dir: a step folder whose ``train_state.json`` may hold ``model_config_fingerprint``.
            fingerprint: ``config_fingerprint`` of the current model's config.
            describe_current: how the message names the current config (a path, a hub id, a YAML key).
        """
        check_same_model(self._complete(Path(step_dir), f"step folder {step_dir}"), fingerprint, describe_current)

    def _stage(self, job: _Save) -> None:
        """Replace the job's live tensors by CPU copies (sharded weights gathered for ``model/``).

        Training may change the originals as soon as ``save`` returns.
        """
        if job.hf_weights is None:
            job.resume = self._stager.stage(job.resume)
        elif any(isinstance(t, DTensor) for t in job.resume["model"].values()):
            kept, _ = unique_entries(job.resume["model"])
            gathered = {
                name: materialize(t, self.save_dtype) if isinstance(t, DTensor) else t.detach().to("cpu", copy=True)
                for name, t in kept.items()
            }
            job.resume = self._stager.stage(job.resume)
            job.hf_weights = gathered if rank() == 0 else None
        else:
            job.resume = self._stager.stage(job.resume)
            job.hf_weights = job.resume["model"] if rank() == 0 else None

    def _write_in_background(self, job: _Save) -> None:
        try:
            self._write(job)
        except BaseException as error:  # handed to the training thread by wait()
            self._error = error

    def _write(self, job: _Save) -> None:
        with _writing(self.dir):
            # Each rank checksums and flushes the files it wrote; rank 0 lists them all in the manifest.
            # DCP's files are final when it returns: a thread checksums them (outside the GIL, mostly)
            # while the weights and the small files are written.
            write_resume_state(job.resume, job.partial / layout.RESUME_DIR, self._group)
            with ThreadPoolExecutor(1, thread_name_prefix="automodel-checksum") as pool:
                resume_files = [f for f in self._own_files(job.partial) if f.startswith(f"{layout.RESUME_DIR}/")]
                sealing = pool.submit(seal, job.partial, resume_files)
                if job.hf_weights is not None:
                    save_hf_weights(
                        job.hf_weights,
                        job.partial / layout.MODEL_DIR,
                        max_shard_size=self.max_shard_size,
                        save_dtype=self.save_dtype,
                    )
                _write_text(layout.rank_file(job.partial, layout.RNG_DIR, rank()), job.rng)
                for name, text in job.stateful.items():
                    _write_text(layout.rank_file(job.partial, name, rank()), text)
                if rank() == 0:
                    _write_text(job.partial / layout.TRAIN_STATE, job.train_state)
                entries = sealing.result()
            barrier(self._group)
            entries.update(seal(job.partial, [f for f in self._own_files(job.partial) if f not in entries]))
            gathered = all_gather(entries, self._group)
            if rank() == 0:
                write_manifest(job.partial, {name: e for part in gathered for name, e in part.items()})
                fsync_tree(job.partial)
                replaced = layout.move_aside(job.final, self._tag) if job.final.exists() else None
                job.partial.rename(job.final)
                fsync_dir(self.dir)
                layout.write_latest(self.dir, job.final, self._tag)
                if replaced is not None:
                    shutil.rmtree(replaced)
                if self.keep_last_n is not None:
                    layout.apply_retention(self.dir, self.keep_last_n, self._tag)
            barrier(self._group)

    def _own_files(self, partial: Path) -> list[str]:
        """The files of a step being written that this rank wrote (see ``writer_rank``)."""
        return [f for f in step_files(partial) if writer_rank(f, world_size()) == rank()]

    def _check_latest_is_not_newer(self, step: int) -> None:
        """Refuse a save that would move ``latest`` back while the newer step it names still exists."""
        latest = self.latest()
        number = None if latest is None else layout.step_number(latest)
        if number is not None and number > step and layout.is_complete(latest):
            raise CheckpointError(
                f"{self.dir / layout.LATEST} names {latest.name}, newer than {layout.step_dir_name(step)} being saved: "
                f"another run is saving into {self.dir}, or this run went back to an older step while newer ones "
                "remain; give each run its own checkpoint.dir, or start with checkpoint.overwrite: true, which "
                "deletes the steps newer than the one resumed from"
            )

    def _complete(self, path: Path, what: str) -> Path:
        if layout.is_complete(path):
            return path
        steps = ", ".join(p.name for p in layout.complete_steps(self.dir)) or "none"
        available = f"complete checkpoints in {self.dir}: {steps}"
        if path.name == layout.MODEL_DIR and layout.is_complete(path.parent):
            raise CheckpointError(f"{what} is the model folder of a step; restore_from the step itself, {path.parent}")
        if not path.exists():
            raise CheckpointError(f"{what} does not exist; {available}")
        raise CheckpointError(
            f"{what} is not a complete checkpoint (a step_N folder with {layout.TRAIN_STATE} and "
            f"{layout.RESUME_DIR}/; an interrupted save leaves a .partial folder); {available}"
        )

    def saved_world_size(self, step_dir: str | os.PathLike[str]) -> int:
        """Return how many processes saved ``step_dir`` (the number of per-rank RNG files)."""
        path = self._complete(Path(step_dir), f"step folder {step_dir}")
        return len(list((path / layout.RNG_DIR).glob("rank*.json")))

    def _rank_file(self, step_dir: Path, folder: str, from_rank0: bool = False) -> Path:
        """This rank's ``folder/rank{R}.json`` of a step (rank 0's with ``from_rank0`` when this rank has none)."""
        path = layout.rank_file(step_dir, folder, rank())
        if not path.is_file() and from_rank0:
            path = layout.rank_file(step_dir, folder, 0)
        if path.is_file():
            return path
        if not (step_dir / folder).is_dir():
            raise CheckpointError(
                f"{step_dir} has no {folder}/ folder: it was saved without the stateful object {folder!r}; "
                f"load it with the stateful names it was saved with"
            )
        saved = sorted(p.name for p in (step_dir / folder).glob("rank*.json"))
        raise CheckpointError(
            f"{step_dir / folder} has {', '.join(saved)} but no {path.name}: the run was saved by {len(saved)} "
            f"processes and this is rank {rank()}; resume with {len(saved)} processes to continue it exactly"
        )


def _check_name(name: str, what: str, well_formed: bool) -> None:
    if not well_formed or name in _RESERVED:
        raise CheckpointError(
            f"{what} {name!r} cannot be used in a step folder; use a plain name such as lr_scheduler or "
            f"config.yaml, other than {', '.join(sorted(_RESERVED))}"
        )


def _train_state_json(step: int, train_state: Mapping[str, Any]) -> str:
    record = {**train_state, "step": step, "timestamp": datetime.now(UTC).isoformat(timespec="seconds")}
    try:
        return json.dumps(record, indent=2, allow_nan=False) + "\n"
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"train_state cannot be written as JSON ({exc}); pass plain numbers, strings, lists and dicts"
        ) from None


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@contextmanager
def _writing(where: Path) -> Iterator[None]:
    """Turn a file system error while saving (permissions, a full disk, a file in the way) into a CheckpointError."""
    try:
        yield
    except OSError as exc:
        raise CheckpointError(
            f"cannot write the checkpoint into {where} ({brief(exc)}); make the folder writable, free space on "
            "its disk, or set checkpoint.dir to another folder"
        ) from None


def _check_resembles(saved: Any, current: Any) -> None:
    """Refuse a saved state that cannot be the object's: not a dict, or no key in common, where its state is a dict.

    Loaders such as StatefulDataLoader accept anything in ``load_state_dict`` and fail later.
    Keys may come and go between library versions, so one key in common is enough.
    """
    if not isinstance(current, dict) or not current:
        return
    if not isinstance(saved, dict):
        raise ValueError(f"the file holds a {type(saved).__name__}, the object's state is a dict")
    if not saved.keys() & current.keys():
        raise ValueError(f"the file's keys ({', '.join(map(str, list(saved)[:5]))}) are none of the object's")


@contextmanager
def _loading(file: Path, what: str) -> Iterator[None]:
    """Turn a state file whose JSON has the wrong shape for ``what`` into a CheckpointError naming it."""
    try:
        yield
    except _BAD_STATE as exc:
        if isinstance(exc, CheckpointError):
            raise
        raise CheckpointError(
            f"{file} does not hold a state {what} can load ({brief(exc)}); the checkpoint is corrupted or was not "
            "written for this run: restore from another step"
        ) from None
