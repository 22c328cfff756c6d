"""No damaged or foreign checkpoint is trusted: the manifest is checked before anything is read, and every reader
turns what it cannot read into a CheckpointError naming the file."""

from __future__ import annotations

import json
import logging
import mmap
import os
import re

import pytest
import torch
import xxhash
from checkpoint_test_helpers import Run, build_run, flip_bytes, reseal, train, truncate

import automodel.checkpoint.checkpointer as checkpointer_module
from automodel.checkpoint import Checkpointer, CheckpointError
from automodel.checkpoint.manifest import _WINDOW, file_digest
from automodel.checkpoint.resume_state import capture_resume_state, write_resume_state

EVERY_KIND = [
    "optim/__0_0.distcp",
    "optim/.metadata",
    "model/model.safetensors",
    "rng/rank0.json",
    "train_state.json",
    "dataloader/rank0.json",
]


def _save(checkpointer: Checkpointer, run: Run):
    return checkpointer.save(
        run.step, model=run.model, optimizer=run.optimizer, stateful=run.stateful(), train_state={"epoch": run.epoch}
    )


def _load(checkpointer: Checkpointer, step_dir) -> dict:
    fresh = build_run(seed=1)
    return checkpointer.load(step_dir, model=fresh.model, optimizer=fresh.optimizer, stateful=fresh.stateful())


@pytest.fixture
def saved(tmp_path):
    """A run saved at steps 2 and 4: (checkpointer, step_000004)."""
    run = build_run()
    checkpointer = Checkpointer(tmp_path)
    for step in (2, 4):
        train(run, step)
        step_dir = _save(checkpointer, run)
    return checkpointer, step_dir


def test_the_manifest_lists_every_file_with_its_size_and_checksum(saved) -> None:
    checkpointer, step_dir = saved
    manifest = json.loads((step_dir / "manifest.json").read_text())
    files = sorted(str(p.relative_to(step_dir)) for p in step_dir.rglob("*") if p.is_file())
    assert sorted(manifest["files"]) == [f for f in files if f != "manifest.json"]
    assert manifest["hash"] == "xxh3_128"
    for name, entry in manifest["files"].items():
        assert entry["size"] == (step_dir / name).stat().st_size
        assert re.fullmatch(r"[0-9a-f]{32}", entry["xxh3_128"])
    assert _load(checkpointer, step_dir)["step"] == 4


@pytest.mark.parametrize("damage", ["flip 1 byte", "flip 2000 bytes", "truncate"])
@pytest.mark.parametrize("name", EVERY_KIND)
def test_a_damaged_file_of_any_kind_is_refused_naming_it_and_the_other_steps(saved, name, damage) -> None:
    checkpointer, step_dir = saved
    if damage == "truncate":
        truncate(step_dir / name)
    else:
        flip_bytes(step_dir / name, int(damage.split()[1]))
    with pytest.raises(CheckpointError) as error:
        _load(checkpointer, step_dir)
    message = str(error.value)
    assert f"checkpoint {step_dir} is corrupted" in message
    assert str(step_dir / name) in message
    assert "set restore_from.path to one of step_000002" in message


def test_size_mode_finds_truncation_but_not_flipped_bytes_and_off_checks_nothing(saved) -> None:
    checkpointer, step_dir = saved
    flip_bytes(step_dir / "model" / "model.safetensors", 2000)  # model/ is not read on resume
    sizes = Checkpointer(checkpointer.dir, verify="size")
    assert _load(sizes, step_dir)["step"] == 4
    truncate(step_dir / "model" / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"model\.safetensors has \d+ bytes where manifest.json records"):
        _load(sizes, step_dir)
    assert _load(Checkpointer(checkpointer.dir, verify="off"), step_dir)["step"] == 4


def test_missing_and_unlisted_files_are_refused_where_load_reads(saved) -> None:
    checkpointer, step_dir = saved
    (step_dir / "model" / "README.md").write_text("notes added after the save\n")  # not read on resume: fine
    assert _load(checkpointer, step_dir)["step"] == 4
    (step_dir / "optim" / "__1_0.distcp").write_bytes(b"")
    (step_dir / "rng" / "rank1.json").write_text("{}")
    with pytest.raises(CheckpointError) as error:
        _load(checkpointer, step_dir)
    assert f"{step_dir / 'optim' / '__1_0.distcp'} is not listed in manifest.json" in str(error.value)
    assert f"{step_dir / 'rng' / 'rank1.json'} is not listed in manifest.json" in str(error.value)
    (step_dir / "optim" / "__1_0.distcp").unlink()
    (step_dir / "rng" / "rank1.json").unlink()
    (step_dir / "lr_scheduler" / "rank0.json").unlink()
    with pytest.raises(CheckpointError, match=re.escape(f"{step_dir / 'lr_scheduler' / 'rank0.json'} is missing")):
        _load(checkpointer, step_dir)


@pytest.mark.parametrize("content", ["{not json", '{"format": "x", "files": []}', ""])
def test_a_damaged_manifest_is_refused_naming_it(saved, content) -> None:
    checkpointer, step_dir = saved
    (step_dir / "manifest.json").write_text(content)
    with pytest.raises(CheckpointError, match=re.escape(str(step_dir / "manifest.json"))):
        _load(checkpointer, step_dir)


def test_a_manifest_naming_files_outside_the_step_is_refused(saved) -> None:
    checkpointer, step_dir = saved
    manifest = json.loads((step_dir / "manifest.json").read_text())
    manifest["files"]["../step_000002/train_state.json"] = {"size": 1, "xxh3_128": "0" * 32}
    (step_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="is not a manifest this package writes"):
        _load(checkpointer, step_dir)


def test_a_step_saved_before_manifests_loads_with_a_warning(saved, caplog) -> None:
    checkpointer, step_dir = saved
    (step_dir / "manifest.json").unlink()
    with caplog.at_level(logging.WARNING, logger="automodel.checkpoint"):
        assert _load(checkpointer, step_dir)["step"] == 4
    assert f"{step_dir} has no manifest.json (saved by automodel-checkpoint before 0.4)" in caplog.text


def test_load_after_verify_step_does_not_check_again_but_the_next_load_does(saved, monkeypatch) -> None:
    checkpointer, step_dir = saved
    checks = []
    real = checkpointer_module.check_step
    monkeypatch.setattr(checkpointer_module, "check_step", lambda *args: checks.append(args[0]) or real(*args))
    checkpointer.verify_step(step_dir)  # as restore_step does, before the recipe reads train_state.json
    _load(checkpointer, step_dir)
    assert checks == [step_dir]
    _load(checkpointer, step_dir)
    assert checks == [step_dir, step_dir]


def test_an_unknown_verify_mode_names_the_setting(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"verify is 'fast'; use full .*, size .* or off"):
        Checkpointer(tmp_path, verify="fast")


# Below, the manifest agrees with the files (resealed, or verify off): the readers themselves must refuse.


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("train_state.json", "{not json", "cannot be read as JSON"),
        ("train_state.json", "[1, 2]", "holds list, not an object of training state"),
        ("dataloader/rank0.json", '{"truncated": ', "cannot be read as JSON"),
        ("dataloader/rank0.json", "[]", "does not hold a state dataloader can load"),
        ("dataloader/rank0.json", '{"x": 1}', "are none of the object's"),
        ("lr_scheduler/rank0.json", '{"__tensor__": {"dtype": "float32"}}', "does not hold a state lr_scheduler"),
        ("rng/rank0.json", "{}", "does not hold a state the random number generators can load"),
        ("rng/rank0.json", '{"python": [], "torch": "AAAA"}', "does not hold a state the random number generators"),
        ("rng/rank0.json", b"\xff\xfe", "cannot be read as JSON"),
    ],
)
def test_a_state_file_that_is_not_what_it_should_be_is_refused_naming_it(saved, name, content, message) -> None:
    checkpointer, step_dir = saved
    path = step_dir / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    reseal(step_dir)
    with pytest.raises(CheckpointError) as error:
        _load(checkpointer, step_dir)
    assert str(error.value).startswith(str(path)) and message in str(error.value)


@pytest.mark.parametrize("name", ["optim/__0_0.distcp", "optim/.metadata"])
def test_truncated_dcp_files_are_refused_naming_the_folder_even_unverified(saved, name) -> None:
    checkpointer, step_dir = saved
    truncate(step_dir / name)
    with pytest.raises(CheckpointError, match=re.escape(str(step_dir / "optim"))):
        _load(Checkpointer(checkpointer.dir, verify="off"), step_dir)


def test_check_same_model_refuses_a_train_state_that_is_not_json(saved) -> None:
    checkpointer, step_dir = saved
    (step_dir / "train_state.json").write_text("{")
    with pytest.raises(CheckpointError, match=r"train_state\.json cannot be read as JSON"):
        checkpointer.check_same_model(step_dir, "0" * 16, "cfg.yaml model")


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_an_optimizer_shard_holding_a_pickle_that_runs_code_is_refused(saved, tmp_path, monkeypatch) -> None:
    checkpointer, step_dir = saved
    monkeypatch.chdir(tmp_path)
    run = build_run()
    train(run, 1)  # AdamW has state now
    state = capture_resume_state(run.model, run.optimizer)
    state["optim"]["param_groups"][0]["lr"] = _RunsCode()  # stored as a torch.save'd value in __0_0.distcp
    for old in (step_dir / "optim").iterdir():
        old.unlink()
    write_resume_state(state, step_dir / "optim", None)
    reseal(step_dir)
    with pytest.raises(CheckpointError, match=r"optim cannot be read .* is not plain data"):
        _load(checkpointer, step_dir)
    assert not (tmp_path / "pwned").exists()


def test_unreadable_weights_are_refused_naming_the_file(saved) -> None:
    from automodel.checkpoint import load_hf_weights, load_hf_weights_into

    _, step_dir = saved
    weights = step_dir / "model" / "model.safetensors"
    truncate(weights)
    with pytest.raises(CheckpointError, match=re.escape(f"{weights} cannot be read as safetensors weights")):
        load_hf_weights(step_dir / "model")
    with pytest.raises(CheckpointError, match=re.escape(str(weights))):
        load_hf_weights_into(torch.nn.Linear(8, 32), step_dir / "model")


def _no_mmap(*args: object, **kwargs: object) -> None:
    raise OSError(19, "No such device")  # as a file system without mmap answers


def test_the_checksum_is_the_same_where_files_cannot_be_mapped(tmp_path, monkeypatch) -> None:
    path = tmp_path / "data"
    path.write_bytes(os.urandom(1000) * (_WINDOW // 1000 + 7))  # more than one window
    expected = xxhash.xxh3_128(path.read_bytes()).hexdigest()
    descriptor = os.open(path, os.O_RDONLY)
    try:
        assert file_digest(descriptor, path.stat().st_size) == expected
        monkeypatch.setattr(mmap, "mmap", _no_mmap)
        assert file_digest(descriptor, path.stat().st_size) == expected
        assert file_digest(descriptor, 0) == xxhash.xxh3_128(b"").hexdigest()
    finally:
        os.close(descriptor)
