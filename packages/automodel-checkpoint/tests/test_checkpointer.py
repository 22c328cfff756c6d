"""Checkpointer: the step folder layout, exact resume, async saves, retention and restore_from."""

from __future__ import annotations

import json

import pytest
import torch
from checkpoint_test_helpers import Run, TinyNet, build_run, train

from automodel.checkpoint import Checkpointer, CheckpointError, load_hf_weights


def _save(checkpointer: Checkpointer, run: Run, **kwargs: object):
    return checkpointer.save(
        run.step,
        model=run.model,
        optimizer=run.optimizer,
        stateful=run.stateful(),
        train_state={"epoch": run.epoch},
        **kwargs,
    )


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_save_writes_the_documented_layout_and_points_latest_at_it(tmp_path) -> None:
    run = build_run()
    train(run, 3)
    step_dir = _save(
        Checkpointer(tmp_path),
        run,
        write_model_files=lambda d: (d / "config.json").write_text("{}"),
        extra_files={"config.yaml": "model: tiny\n"},
    )
    assert step_dir == tmp_path / "step_000003"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000003"]
    assert (tmp_path / "latest").read_text().strip() == "step_000003"
    assert sorted(str(p.relative_to(step_dir)) for p in step_dir.rglob("*") if p.is_file()) == [
        "config.yaml",
        "dataloader/rank0.json",
        "lr_scheduler/rank0.json",
        "manifest.json",
        "model/config.json",
        "model/model.safetensors",
        "optim/.metadata",
        "optim/__0_0.distcp",
        "rng/rank0.json",
        "train_state.json",
    ]
    train_state = json.loads((step_dir / "train_state.json").read_text())
    assert train_state["step"] == 3 and train_state["epoch"] == 0 and "timestamp" in train_state
    assert all(torch.equal(load_hf_weights(step_dir / "model")[k], v) for k, v in run.model.state_dict().items())


def test_resume_is_exact_same_losses_and_weights_as_an_uninterrupted_run(tmp_path) -> None:
    uninterrupted = build_run()
    expected = train(uninterrupted, 14)  # 10 steps per epoch: the resume is mid-epoch, then crosses an epoch

    first = build_run()
    losses = train(first, 7)
    checkpointer = Checkpointer(tmp_path)
    _save(checkpointer, first)

    torch.manual_seed(123)  # a fresh process: other weights, other generator states
    resumed = build_run(seed=99)
    state = checkpointer.load(
        checkpointer.resolve("latest"), model=resumed.model, optimizer=resumed.optimizer, stateful=resumed.stateful()
    )
    resumed.step, resumed.epoch = state["step"], state["epoch"]
    losses += train(resumed, 14)

    assert losses == expected  # bit-identical floats, step by step
    for name, value in uninterrupted.model.state_dict().items():
        assert torch.equal(resumed.model.state_dict()[name], value), name
    assert resumed.lr_scheduler.get_last_lr() == uninterrupted.lr_scheduler.get_last_lr()


def test_async_save_writes_the_same_files_as_a_synchronous_save(tmp_path) -> None:
    run = build_run(ballast=1000)
    train(run, 5)
    torch.manual_seed(5)
    sync_dir = _save(Checkpointer(tmp_path / "sync", max_shard_size=2000), run)
    asynchronous = Checkpointer(tmp_path / "async", async_save=True, max_shard_size=2000)
    torch.manual_seed(5)
    async_dir = _save(asynchronous, run)
    asynchronous.wait()

    sync_files, async_files = _files(sync_dir), _files(async_dir)
    assert sync_files.keys() == async_files.keys()
    for name in sync_files:
        if name.endswith((".safetensors", ".json")) and name not in ("train_state.json", "manifest.json"):
            assert sync_files[name] == async_files[name], name
    restored = []
    for step_dir in (sync_dir, async_dir):
        fresh = build_run(seed=1, ballast=1000)
        Checkpointer(tmp_path / "reader").load(step_dir, model=fresh.model, optimizer=fresh.optimizer)
        restored.append((fresh.model.state_dict(), fresh.optimizer.state_dict()))
    (sync_model, sync_optim), (async_model, async_optim) = restored
    assert all(torch.equal(sync_model[k], async_model[k]) for k in sync_model)
    for index, state in sync_optim["state"].items():
        assert all(torch.equal(state[k], async_optim["state"][index][k]) for k in state)
    assert sync_optim["param_groups"] == async_optim["param_groups"]


def test_async_saves_hold_the_values_of_the_moment_save_was_called(tmp_path) -> None:
    run = build_run(ballast=2_000_000)
    checkpointer = Checkpointer(tmp_path, async_save=True)
    expected = {}
    for step in (1, 2):  # the second save reuses the first one's CPU buffers
        run.step = step
        expected[step] = {k: v.clone() for k, v in run.model.state_dict().items()}
        _save(checkpointer, run)
        with torch.no_grad():
            for tensor in run.model.state_dict().values():
                tensor.add_(1.0)  # training goes on while the background thread writes
    checkpointer.close()
    assert checkpointer.latest() == tmp_path / "step_000002"
    for step, values in expected.items():
        saved = load_hf_weights(tmp_path / f"step_{step:06d}" / "model")
        assert all(torch.equal(saved[k], v) for k, v in values.items()), step


def test_keep_last_n_deletes_the_oldest_steps_but_never_the_one_latest_names(tmp_path) -> None:
    run = build_run()
    checkpointer = Checkpointer(tmp_path, keep_last_n=2)
    for step in (1, 2, 3):
        run.step = step
        _save(checkpointer, run)
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_000002", "step_000003"]
    run.step = 10
    _save(checkpointer, run)
    (tmp_path / "latest").write_text("step_000003\n")  # a run resumed from step 3 ...
    run.step = 4
    _save(checkpointer, run)  # ... and saved step 4: step 10 is newer, but 4 is latest
    assert sorted(p.name for p in tmp_path.glob("step_*")) == ["step_000004", "step_000010"]
    assert checkpointer.latest() == tmp_path / "step_000004"


def test_an_interrupted_save_is_never_resolved_and_is_deleted_by_the_next_save(tmp_path) -> None:
    run = build_run()
    checkpointer = Checkpointer(tmp_path)
    _save(checkpointer, run)
    leftover = tmp_path / ".step_000005.partial-4242"
    (leftover / "model").mkdir(parents=True)
    assert checkpointer.resolve("latest") == tmp_path / "step_000000"
    with pytest.raises(CheckpointError, match=r"is not a complete checkpoint.*step_000000"):
        checkpointer.resolve(leftover)
    run.step = 1
    _save(checkpointer, run)
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000000", "step_000001"]


def test_saving_a_step_again_replaces_it_whole(tmp_path) -> None:
    checkpointer = Checkpointer(tmp_path)
    first, second = TinyNet(), TinyNet()
    checkpointer.save(4, model=first, extra_files={"note.txt": "first"})
    step_dir = checkpointer.save(4, model=second)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_000004"]
    assert not (step_dir / "note.txt").exists()
    assert torch.equal(load_hf_weights(step_dir / "model")["out.weight"], second.out.weight)


def test_resolve_latest_before_any_save(tmp_path) -> None:
    checkpointer = Checkpointer(tmp_path)
    assert checkpointer.latest() is None
    assert checkpointer.resolve("latest", missing_ok=True) is None
    assert checkpointer.resolve(None) is None
    with pytest.raises(CheckpointError, match="holds no checkpoint yet") as error:
        checkpointer.resolve("latest")
    assert error.value.user_error is True


def test_resolve_a_missing_path_lists_the_complete_steps(tmp_path) -> None:
    run = build_run()
    checkpointer = Checkpointer(tmp_path)
    _save(checkpointer, run)
    assert checkpointer.resolve("step_000000") == tmp_path / "step_000000"  # a name under dir
    with pytest.raises(CheckpointError) as error:
        checkpointer.resolve(tmp_path / "step_000700")
    assert str(error.value) == (
        f"restore_from {tmp_path / 'step_000700'} does not exist; complete checkpoints in {tmp_path}: step_000000"
    )
    with pytest.raises(CheckpointError, match="is the model folder of a step; restore_from the step itself"):
        checkpointer.resolve(tmp_path / "step_000000" / "model")


def test_a_different_model_config_is_an_error_naming_both_configs(tmp_path) -> None:
    from automodel.checkpoint import config_fingerprint

    run = build_run()
    saved_config = {"hidden_size": 32, "num_layers": 2}
    checkpointer = Checkpointer(tmp_path)
    step_dir = checkpointer.save(
        1,
        model=run.model,
        train_state={"model_config_fingerprint": config_fingerprint(saved_config)},
        write_model_files=lambda d: (d / "config.json").write_text(json.dumps(saved_config)),
    )
    checkpointer.check_same_model(step_dir, config_fingerprint(dict(saved_config)), "cfg.yaml model")
    with pytest.raises(CheckpointError) as error:
        checkpointer.check_same_model(
            step_dir, config_fingerprint({**saved_config, "hidden_size": 64}), "cfg.yaml model"
        )
    assert f"its config is {step_dir / 'model' / 'config.json'}" in str(error.value)
    assert "the current model's is cfg.yaml model" in str(error.value)


def test_config_fingerprint_ignores_volatile_keys_and_key_order() -> None:
    from automodel.checkpoint import config_fingerprint

    config = {"hidden_size": 32, "text_config": {"vocab_size": 10, "dtype": "float32"}, "torch_dtype": "float32"}
    same = {
        "text_config": {"dtype": "bfloat16", "vocab_size": 10},
        "hidden_size": 32,
        "transformers_version": "5.0",
        "_name_or_path": "/elsewhere",
    }
    assert config_fingerprint(config) == config_fingerprint(same)
    assert config_fingerprint(config) != config_fingerprint({**config, "hidden_size": 33})


def test_loading_into_a_different_model_names_the_keys_that_differ(tmp_path) -> None:
    checkpointer = Checkpointer(tmp_path)
    step_dir = checkpointer.save(1, model=TinyNet())
    other = torch.nn.Sequential(torch.nn.Linear(8, 32))
    with pytest.raises(CheckpointError, match=r"different model than this Sequential: it lacks 0\.bias"):
        checkpointer.load(step_dir, model=other)
    with pytest.raises(CheckpointError, match="holds no optimizer state"):
        model = TinyNet()
        checkpointer.load(step_dir, model=model, optimizer=torch.optim.AdamW(model.parameters()))


def test_a_rank_file_missing_on_load_says_how_many_processes_saved(tmp_path) -> None:
    run = build_run()
    checkpointer = Checkpointer(tmp_path, verify="off")  # the manifest would refuse the moved files first
    step_dir = _save(checkpointer, run)
    (step_dir / "rng" / "rank0.json").rename(step_dir / "rng" / "rank1.json")
    (step_dir / "rng" / "rank2.json").write_bytes((step_dir / "rng" / "rank1.json").read_bytes())
    with pytest.raises(CheckpointError, match=r"has rank1.json, rank2.json but no rank0.json.*resume with 2 processes"):
        checkpointer.load(step_dir, model=run.model)
    with pytest.raises(CheckpointError, match="saved without the stateful object 'sampler'"):
        checkpointer.load(step_dir, model=run.model, stateful={"sampler": run.lr_scheduler})


def test_replicated_state_and_rng_load_rank0s_files_on_a_rank_the_saving_run_did_not_have(
    tmp_path, monkeypatch
) -> None:
    run = build_run()
    checkpointer = Checkpointer(tmp_path)
    step_dir = _save(checkpointer, run)
    assert checkpointer.saved_world_size(step_dir) == 1
    resumed = build_run(seed=1)
    monkeypatch.setattr("automodel.checkpoint.checkpointer.rank", lambda: 1)  # rank 1 of a larger run
    with pytest.raises(CheckpointError, match=r"has rank0.json but no rank1.json.*resume with 1 processes"):
        checkpointer.load(step_dir, model=resumed.model, stateful={"lr_scheduler": resumed.lr_scheduler})
    checkpointer.load(
        step_dir, model=resumed.model, stateful={"lr_scheduler": resumed.lr_scheduler}, replicated=["lr_scheduler"]
    )
    assert resumed.lr_scheduler.state_dict() == run.lr_scheduler.state_dict()


class _Opaque:
    def state_dict(self) -> dict:
        return {"position": 3, "handle": object()}

    def load_state_dict(self, state: dict) -> None:
        pass


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"step": -1}, "checkpoint step -1 is not a step number"),
        ({"stateful": {"loader": _Opaque()}}, r"stateful\['loader'\]\['handle'\] is a builtins.object"),
        ({"stateful": {"optim": _Opaque()}}, "stateful name 'optim' cannot be used in a step folder"),
        ({"stateful": {"../up": _Opaque()}}, "stateful name '../up' cannot be used"),
        ({"extra_files": {"../config.yaml": ""}}, "extra_files name '../config.yaml' cannot be used"),
        ({"extra_files": {"rng": ""}}, "extra_files name 'rng' cannot be used"),
        ({"train_state": {"epoch": object()}}, "train_state cannot be written as JSON"),
    ],
)
def test_state_a_checkpoint_cannot_hold_is_refused_before_anything_is_written(tmp_path, kwargs, message) -> None:
    with pytest.raises(CheckpointError, match=message):
        Checkpointer(tmp_path / "run").save(**{"step": 1, "model": TinyNet(), **kwargs})
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"keep_last_n": 0}, "keep_last_n"),
        ({"max_shard_size": "big"}, "max_shard_size"),
        ({"save_dtype": "q4"}, "save_dtype"),
    ],
)
def test_bad_checkpointer_settings_name_the_setting(tmp_path, kwargs, setting) -> None:
    with pytest.raises(CheckpointError, match=setting):
        Checkpointer(tmp_path, **kwargs)
