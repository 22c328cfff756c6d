"""Every bad input and fault of issue 14, as a table, through the real `automodel` command.

Each case asserts what a user sees: exit status 2, no Python traceback, one paragraph that
names the YAML key or the file, and nothing written or changed. The payload cases also check
that the attacker's marker file never appears, and the secret cases that the secret is
nowhere: not in stdout or stderr, not in any file of the run folder.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cli_fork import CliResult, run_cli

ROOT = Path(__file__).resolve().parent.parent
TINY_SFT = "examples/llm_finetune/tiny_sft.yaml"
SECRET = "hf_sekrit_value_0123456789"
SHORT_RUN = [
    "--step_scheduler.max_steps",
    "2",
    "--step_scheduler.val_check_interval",
    "null",
    "--step_scheduler.log_interval",
    "1",
    "--~validation_dataset",
    "--~validation",
    "--+logging.progress_bar=false",
    "--lr_scheduler.warmup_steps",
    "1",
]


@dataclass
class Case:
    """One bad input: the arguments after ``automodel``, what the error must name, and how to set it up."""

    argv: list[str]
    names: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    prepare: Callable[[Path], None] | None = None


def finetune(*extra: str) -> list[str]:
    """``finetune llm -c tiny_sft.yaml`` writing to ``{run}`` (filled in per test) plus ``extra``."""
    return ["finetune", "llm", "-c", TINY_SFT, "--checkpoint.dir", "{run}", *extra]


def _write(relative: str, content: bytes | str) -> Callable[[Path], None]:
    def prepare(tmp: Path) -> None:
        path = tmp / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)

    return prepare


CONFIG_MISTAKES = {
    "negative batch size": Case(
        finetune("--step_scheduler.local_batch_size", "-4"), ("step_scheduler.local_batch_size", "at least 1")
    ),
    "string batch size": Case(
        finetune("--step_scheduler.global_batch_size", "lots"), ("step_scheduler.global_batch_size", "a string")
    ),
    "negative num_workers": Case(finetune("--dataloader.num_workers", "-1"), ("dataloader.num_workers",)),
    "string seed": Case(finetune("--seed", "abc"), ("`seed`", "whole number")),
    "negative lr": Case(finetune("--optimizer.lr", "-1"), ("`optimizer`", "Invalid learning rate")),
    "string lr": Case(finetune("--optimizer.lr", "fast"), ("`optimizer`", "torch.optim.AdamW")),
    "misspelt plain key": Case(finetune("--dataloader.shufle", "false"), ("dataloader.shufle", "`shuffle`")),
    "misspelt generation key": Case(
        finetune("--validation.generation.max_new_token", "4"), ("validation.generation.max_new_token",)
    ),
    "unknown section": Case(finetune("--+monitor.project", "x"), ("`monitor`", "not a section train_ft knows")),
    "top-level wandb section (NeMo's layout)": Case(
        finetune("--+wandb.project", "x"), ("`wandb`", "trackers are set under `logging:`", "`logging.wandb`")
    ),
    "misspelt tracker key": Case(finetune("--+logging.wandb.projet", "x"), ("logging.wandb.projet", "`project`")),
    "unknown wandb mode": Case(finetune("--+logging.wandb.mode", "cloud"), ("logging.wandb.mode", "offline")),
    "credential in a tracker section": Case(
        finetune("--+logging.wandb.api_key", SECRET), ("logging.wandb.api_key", "not a wandb setting")
    ),
    "wrong route": Case(
        ["finetune", "vlm", "-c", TINY_SFT, "--checkpoint.dir", "{run}"], ("`recipe`", "finetune.llm", "finetune vlm")
    ),
    "wrong route, no recipe key": Case(
        ["finetune", "vlm", "-c", TINY_SFT, "--checkpoint.dir", "{run}", "--~recipe"], ("`tokenizer`", "finetune (vlm)")
    ),
    "non-UTF-8 data row": Case(
        finetune("--dataset.path_or_dataset_id", "{tmp}/latin1.jsonl"),
        ("latin1.jsonl line 3", "not UTF-8"),
        prepare=_write(
            "latin1.jsonl",
            b'{"question": "1", "answer": "one"}\n{"question": "2", "answer": "two"}\n'
            b'{"question": "3", "answer": "tr\xe8s"}\n',
        ),
    ),
    "credential in tokenizer kwargs": Case(
        finetune("--tokenizer.api_key", SECRET), ("`api_key`", "looks like a credential")
    ),
    "credential as a model config field": Case(finetune("--model.hf_token", SECRET), ("`hf_token`", "credential")),
}


def _fill(argv: list[str], run: Path, tmp: Path) -> list[str]:
    return [a.replace("{run}", str(run)).replace("{tmp}", str(tmp)) for a in argv]


def _snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (but the run lock) with its size and modification time."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and p.name != ".lock"
    }


def assert_refused(result: CliResult, *names: str) -> None:
    """Exit 2, no traceback, one paragraph starting ``automodel: error:`` naming every one of ``names``."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    error = result.stderr[result.stderr.index("automodel: error:") :].strip()
    assert "\n\n" not in error, error
    for name in names:
        assert name in error, (name, error)


def assert_secret_nowhere(result: CliResult, *folders: Path) -> None:
    """The secret is in no output and no file under ``folders``."""
    assert SECRET not in result.stdout + result.stderr
    for folder in folders:
        for path in folder.rglob("*") if folder.exists() else []:
            assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path


@pytest.mark.parametrize("case", CONFIG_MISTAKES.values(), ids=CONFIG_MISTAKES.keys())
def test_a_config_mistake_is_exit_2_naming_the_key_and_writes_nothing(case: Case, tmp_path: Path) -> None:
    if case.prepare is not None:
        case.prepare(tmp_path)
    run = tmp_path / "run"
    result = run_cli(_fill(case.argv, run, tmp_path), cwd=ROOT, env={**os.environ, **case.env})
    assert_refused(result, *case.names)
    assert not run.exists(), sorted(p.name for p in run.iterdir())
    assert_secret_nowhere(result, tmp_path)


def _evil_pickle(marker: Path) -> bytes:
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    return pickle.dumps(Payload())


def _config_with_model(tmp: Path, name: str, model: str) -> str:
    """Write ``tmp/name``: tiny_sft.yaml with its ``model:`` section replaced by the YAML text ``model``."""
    text = (ROOT / TINY_SFT).read_text(encoding="utf-8")
    start, end = text.index("model:\n"), text.index("tokenizer:\n")
    path = tmp / name
    path.write_text(text[:start] + model + "\n" + text[end:], encoding="utf-8")
    return str(path)


def _remote_code_model(folder: Path, marker: Path) -> None:
    """A model folder whose config asks transformers to import its own evil.py, which touches ``marker``."""
    folder.mkdir(parents=True)
    auto_map = {"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps({"model_type": "evil", "auto_map": auto_map}), encoding="utf-8")
    (folder / "evil.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n", encoding="utf-8")


def _payloads(tmp: Path, marker: Path) -> dict[str, list[str]]:
    """The three ways a received config or file tried to run code, as `automodel` arguments."""
    evil = tmp / "evil.pt"
    evil.write_bytes(_evil_pickle(marker))
    _remote_code_model(tmp / "evil_model", marker)
    grants_itself = _config_with_model(
        tmp, "grants_itself.yaml", f"target_allowlist: [os]\nmodel:\n  _target_: os.system\n  command: touch {marker}\n"
    )
    remote = _config_with_model(
        tmp,
        "remote_code.yaml",
        "model:\n  _target_: automodel.models.AutoModelForCausalLM.from_pretrained\n"
        f"  pretrained_model_name_or_path: {tmp / 'evil_model'}\n  trust_remote_code: true\n",
    )
    return {
        "torch.load of a pickle": [
            "-c",
            TINY_SFT,
            "--model",
            f"{{_target_: torch.load, f: {evil}, weights_only: false}}",
        ],
        "target_allowlist in the config": ["-c", grants_itself],
        "trust_remote_code in the config": ["-c", remote],
    }


PAYLOAD_NAMES = {
    "torch.load of a pickle": ("torch.load", "--allow-target"),
    "target_allowlist in the config": ("target_allowlist", "--allow-target"),
    "trust_remote_code in the config": ("trust_remote_code", "--trust-remote-code"),
}


@pytest.mark.parametrize("payload", PAYLOAD_NAMES)
@pytest.mark.parametrize("command", [["finetune", "llm"], ["config", "validate"]], ids=["run", "validate"])
def test_no_payload_runs_and_run_and_validate_refuse_it_alike(payload: str, command: list[str], tmp_path: Path):
    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    argv = [*command, *_payloads(tmp_path, marker)[payload], "--checkpoint.dir", str(run)]
    result = run_cli(argv, cwd=ROOT)
    assert_refused(result, *PAYLOAD_NAMES[payload])
    assert not marker.exists()
    assert not run.exists()


def test_the_pickle_payload_is_real_once_the_user_allows_exactly_that_callable(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    argv = ["finetune", "llm", *_payloads(tmp_path, marker)["torch.load of a pickle"], "--allow-target", "torch.load"]
    run_cli([*argv, "--checkpoint.dir", str(tmp_path / "run")], cwd=ROOT)
    assert marker.exists()


def test_a_secret_from_the_environment_reaches_no_file_and_no_output(tmp_path: Path) -> None:
    run = tmp_path / "run"
    env = {**os.environ, "HF_TOKEN": SECRET}
    for mistake in (["--dataset.path_or_dataset_id", "${env:HF_TOKEN}"], ["--optimizer.lr", "${env:HF_TOKEN}"]):
        result = run_cli(_fill(finetune(*SHORT_RUN, *mistake), run, tmp_path), cwd=ROOT, env=env)
        section = mistake[0][2:].split(".")[0]
        assert_refused(result, f"`{section}`")
        assert_secret_nowhere(result, tmp_path)
    argv = finetune(*SHORT_RUN, "--tokenizer.hf_token", "${env:HF_TOKEN}")
    result = run_cli(_fill(argv, run, tmp_path), cwd=ROOT, env=env)
    assert result.returncode == 0, result.stderr
    assert (run / "step_000002" / "model" / "tokenizer_config.json").is_file()
    assert_secret_nowhere(result, tmp_path)


def test_a_literal_secret_reaches_no_dry_run_output_and_no_slurm_job_file(tmp_path: Path) -> None:
    run, jobs = tmp_path / "run", tmp_path / "jobs"
    argv = finetune("--tokenizer.token", SECRET, "--dry-run")
    local = run_cli(_fill(argv, run, tmp_path), cwd=ROOT)
    assert local.returncode == 0, local.stderr
    assert "<redacted>" in local.stdout
    slurm = run_cli(_fill([*argv, "--+slurm.nodes", "1", "--+slurm.job_dir", str(jobs)], run, tmp_path), cwd=ROOT)
    assert slurm.returncode == 0, slurm.stderr
    assert (jobs / "config.yaml").is_file()
    assert_secret_nowhere(local, tmp_path)
    assert_secret_nowhere(slurm, tmp_path)


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished 2-step run of tiny_sft with a checkpoint at each step (step_000001, step_000002)."""
    run = tmp_path_factory.mktemp("saved") / "run"
    argv = finetune(*SHORT_RUN, "--step_scheduler.checkpoint_interval", "1")
    result = run_cli(_fill(argv, run, run.parent), cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert (run / "latest").read_text().strip() == "step_000002"
    return run


def _copy_run(saved: Path, tmp: Path) -> Path:
    run = tmp / "run"
    shutil.copytree(saved, run)
    return run


def _flip_bytes(path: Path, count: int = 1) -> None:
    data = bytearray(path.read_bytes())
    for i in range(min(count, len(data))):
        data[(len(data) // 2 + i * 7) % len(data)] ^= 0xFF
    path.write_bytes(bytes(data))


def _resume(run: Path, *extra: str) -> CliResult:
    return run_cli(_fill(finetune(*SHORT_RUN, "--checkpoint.auto_resume", "true", *extra), run, run.parent), cwd=ROOT)


# Every kind of file is damaged one by one in automodel-checkpoint's test_integrity; here, a few through the CLI.
DAMAGE = {
    "2000 flipped bytes in an optimizer shard": ("optim/__0_0.distcp", lambda p: _flip_bytes(p, 2000)),
    "flipped byte in the weights": ("model/model.safetensors", lambda p: _flip_bytes(p)),
    "flipped byte in the data position": ("dataloader/rank0.json", lambda p: _flip_bytes(p)),
    "bad JSON in train_state.json": ("train_state.json", lambda p: p.write_text("{not json")),
    "truncated optimizer shard": ("optim/__0_0.distcp", lambda p: p.write_bytes(p.read_bytes()[:100])),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_checkpoint_is_refused_on_resume_naming_the_file(saved_run: Path, tmp_path: Path, damage):
    relative, spoil = damage
    run = _copy_run(saved_run, tmp_path)
    spoil(run / "step_000002" / relative)
    before = _snapshot(run)
    result = _resume(run)
    assert_refused(result, relative.split("/")[-1], "step_000001")  # the file, and the step still good
    assert _snapshot(run) == before


def test_with_verification_off_bad_state_is_still_exit_2_naming_the_file(saved_run: Path, tmp_path: Path) -> None:
    run = _copy_run(saved_run, tmp_path)
    (run / "step_000002" / "dataloader" / "rank0.json").write_text("[1, 2")
    before = _snapshot(run)
    result = _resume(run, "--checkpoint.verify", "off")
    assert_refused(result, "dataloader/rank0.json")
    assert _snapshot(run) == before


def test_a_checkpoint_dir_that_is_a_file_is_exit_2_naming_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.write_text("not a folder")
    result = run_cli(_fill(finetune(*SHORT_RUN), run, tmp_path), cwd=ROOT)
    assert_refused(result, str(run))
    assert run.read_text() == "not a folder"


def test_a_second_run_on_a_held_folder_is_exit_2_naming_the_holder(saved_run: Path, tmp_path: Path) -> None:
    from automodel.checkpoint import lock_run_dir

    run = _copy_run(saved_run, tmp_path)
    before = _snapshot(run)
    with lock_run_dir(run):
        result = _resume(run)
    assert_refused(result, str(run), f"pid {os.getpid()}")
    assert _snapshot(run) == before


def test_a_fresh_run_into_another_runs_folder_is_refused_and_latest_never_moves_back(saved_run, tmp_path) -> None:
    run = _copy_run(saved_run, tmp_path)
    before = _snapshot(run)
    fresh = finetune(*SHORT_RUN, "--step_scheduler.max_steps", "1", "--checkpoint.overwrite", "false")
    result = run_cli(_fill(fresh, run, tmp_path), cwd=ROOT)
    assert_refused(result, str(run), "step_000002", "checkpoint.overwrite")
    assert _snapshot(run) == before
    result = run_cli(
        _fill(finetune(*SHORT_RUN, "--step_scheduler.max_steps", "1", "--checkpoint.overwrite", "true"), run, tmp_path),
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert (run / "latest").read_text().strip() == "step_000001"
    assert not (run / "step_000002").exists()
