"""A saved step survives a crash of the machine (files and folders flushed before the rename that publishes it)
and is readable by the user's group (the umask decides, as for any file a program writes)."""

from __future__ import annotations

import errno
import os
import stat

import pytest
from checkpoint_test_helpers import build_run, train

from automodel.checkpoint import Checkpointer, CheckpointError, save_hf_weights


def _save(root, **kwargs):
    run = build_run()
    train(run, 2)
    return Checkpointer(root, **kwargs).save(
        run.step,
        model=run.model,
        optimizer=run.optimizer,
        stateful=run.stateful(),
        write_model_files=lambda d: (d / "config.json").write_text("{}"),
        extra_files={"config.yaml": "model: tiny\n"},
    )


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_saved_files_and_folders_get_the_modes_the_umask_gives(tmp_path, umask) -> None:
    previous = os.umask(umask)
    try:
        step_dir = _save(tmp_path / "run")
    finally:
        os.umask(previous)
    paths = [step_dir, *step_dir.rglob("*"), tmp_path / "run" / "latest"]
    modes = {str(p.relative_to(tmp_path)): stat.S_IMODE(p.stat().st_mode) for p in paths}
    expected = {name: (0o777 if (tmp_path / name).is_dir() else 0o666) & ~umask for name in modes}
    assert modes == expected  # model.safetensors too, which safetensors itself writes 0o600


def test_save_hf_weights_keeps_the_mode_of_a_file_it_overwrites(tmp_path) -> None:
    weights = {"w": build_run().model.inp.weight.detach()}
    save_hf_weights(weights, tmp_path)
    (tmp_path / "model.safetensors").chmod(0o600)
    save_hf_weights(weights, tmp_path)
    assert stat.S_IMODE((tmp_path / "model.safetensors").stat().st_mode) == 0o600


def test_every_file_and_folder_is_flushed_before_the_step_is_published_and_latest_after(tmp_path, monkeypatch) -> None:
    events: list[tuple[str, ...]] = []
    real_fsync, real_rename, real_replace = os.fsync, os.rename, os.replace

    def fsync(descriptor: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{descriptor}")))
        real_fsync(descriptor)

    def rename(source, target, **kwargs) -> None:
        events.append(("rename", str(source), str(target)))
        real_rename(source, target, **kwargs)

    def replace(source, target, **kwargs) -> None:
        events.append(("replace", str(source), str(target)))
        real_replace(source, target, **kwargs)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    monkeypatch.setattr(os, "replace", replace)
    root = tmp_path / "run"
    step_dir = _save(root)

    published = next(i for i, e in enumerate(events) if e[0] == "rename" and e[2] == str(step_dir))
    partial = events[published][1]
    flushed = {e[1].replace(partial, str(step_dir)) for e in events[:published] if e[0] == "fsync"}
    assert {str(step_dir), *(str(p) for p in step_dir.rglob("*"))} <= flushed
    pointed = next(i for i, e in enumerate(events) if e[0] == "replace" and e[2] == str(root / "latest"))
    assert ("fsync", events[pointed][1]) in events[published:pointed]  # the new latest's content
    assert ("fsync", str(root)) in events[published:pointed]  # the rename of the step
    assert events[-1] == ("fsync", str(root))  # the rename of latest


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES])
def test_a_save_the_file_system_refuses_is_a_checkpoint_error_naming_the_folder(tmp_path, monkeypatch, code) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code), str(tmp_path / "run" / "model.safetensors"))

    monkeypatch.setattr("automodel.checkpoint.checkpointer.save_hf_weights", refuse)
    with pytest.raises(CheckpointError) as error:
        _save(tmp_path / "run")
    assert str(error.value).startswith(f"cannot write the checkpoint into {tmp_path / 'run'} (")
    assert os.strerror(code) in str(error.value) and "set checkpoint.dir to another folder" in str(error.value)


def test_a_checkpoint_dir_that_is_a_file_is_refused(tmp_path) -> None:
    (tmp_path / "run").write_text("")
    with pytest.raises(CheckpointError, match=f"checkpoint dir {tmp_path / 'run'} is a file"):
        Checkpointer(tmp_path / "run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_saving_into_a_read_only_folder_is_a_checkpoint_error(tmp_path) -> None:
    (tmp_path / "run").mkdir(mode=0o555)
    with pytest.raises(CheckpointError, match=f"cannot write the checkpoint into {tmp_path / 'run'}"):
        _save(tmp_path / "run")
