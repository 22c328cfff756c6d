"""Issue 14 through the `automodel` command: no config runs code, no secret reaches a file or output."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cli_helpers import assert_one_paragraph_error, clean_env

from automodel.cli.job import Job
from automodel.cli.k8s import parse_k8s_section, render_manifest
from automodel.cli.launch import LaunchOptions
from automodel.cli.routes import route_by_name
from automodel.config import config_from_dict

SECRET = "sekrit-123"


class _Touch:
    """Unpickling this creates ``path``: proof that a pickle ran."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


@pytest.fixture
def evil_pickle(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "pickle-ran"
    payload = tmp_path / "evil.pt"
    payload.write_bytes(pickle.dumps(_Touch(marker)))
    return payload, marker


def _files_text(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


# ---- 1. loaders of untrusted data are not callable from a config -----------------------------------------------


def test_torch_load_given_as_an_override_is_refused_and_runs_no_pickle(cli, write_config, tmp_path, evil_pickle):
    payload, marker = evil_pickle
    cfg = write_config({"output": {"dir": str(tmp_path / "out")}, "model": {"_target_": "collections.OrderedDict"}})
    override = f"{{_target_: torch.load, f: {payload}, weights_only: false}}"
    result = cli("finetune", "toy", "-c", cfg, "--model", override)
    assert_one_paragraph_error(
        result,
        "`model._target_`",
        "torch.load runs pickled code from a file; configs may not call loaders of untrusted data",
        "--allow-target torch.load",
    )
    assert not marker.exists()


@pytest.mark.parametrize(
    ("target", "allow", "reason"),
    [
        ("torch.load", [], "torch.load runs pickled code"),
        ("torch.serialization.load", [], "torch.load runs pickled code"),
        ("torch.jit.load", [], "torch.jit.load runs pickled code"),
        ("torch.hub.load", [], "downloads and runs code"),
        ("torch.ops.load_library", [], "compiles or loads native code"),
        ("numpy.load", ["--allow-target", "numpy"], "numpy.load runs pickled code"),
        ("torch.serialization.pickle.loads", ["--allow-target", "pickle"], "belongs to `_pickle`"),
        ("os.system", ["--allow-target", "os"], "belongs to `posix`"),
    ],
)
def test_validate_gives_the_verdict_the_run_gives(cli, write_config, tmp_path, target, allow, reason):
    cfg = write_config({"output": {"dir": str(tmp_path / "out")}, "model": {"_target_": target}})
    for command in (["config", "validate"], ["finetune", "toy"]):
        result = cli(*command, "-c", cfg, *allow)
        assert_one_paragraph_error(result, "`model._target_`", reason, f"--allow-target {target}")


def test_an_alias_through_another_allowed_package_is_caught(cli, write_config):
    pytest.importorskip("transformers")
    cfg = write_config({"model": {"_target_": "transformers.modeling_utils.torch.load"}})
    assert_one_paragraph_error(cli("config", "validate", "-c", cfg), "torch.load runs pickled code")


def test_only_an_allowance_naming_the_exact_callable_lifts_the_denylist(cli, write_config):
    cfg = write_config({"model": {"_target_": "torch.load", "f": "weights.pt"}})
    assert cli("config", "validate", "-c", cfg, "--allow-target", "torch.load").returncode == 0
    assert cli("config", "validate", "-c", cfg, "--allow-target", "torch.serialization.load").returncode == 0
    assert cli("config", "validate", "-c", cfg, "--allow-target", "torch.serialization").returncode == 2


# ---- 2. a config cannot grant itself permissions ---------------------------------------------------------------


@pytest.mark.parametrize("command", [["finetune", "toy"], ["config", "validate"], ["config", "show"]])
def test_a_target_allowlist_in_the_config_is_refused(cli, write_config, command):
    cfg = write_config({"target_allowlist": ["os"], "model": {"_target_": "os.system", "command": "true"}})
    assert_one_paragraph_error(
        cli(*command, "-c", cfg),
        f"{cfg}:1: `target_allowlist`",
        "may not grant itself permissions",
        "--allow-target NAME",
        "AUTOMODEL_TARGET_ALLOWLIST",
    )


def _record(out: Path, rank: int = 0) -> dict:
    return json.loads((out / f"rank{rank}.json").read_text())


@pytest.mark.parametrize(
    ("launcher", "where"),
    [
        ({"slurm": {"env": {"AUTOMODEL_TARGET_ALLOWLIST": "os"}}}, "slurm.env.AUTOMODEL_TARGET_ALLOWLIST"),
        ({"k8s": {"image": "i", "env": {"AUTOMODEL_TRUST_REMOTE_CODE": 1}}}, "k8s.env.AUTOMODEL_TRUST_REMOTE_CODE"),
        (
            {"k8s": {"image": "i", "secrets": [{"env": "AUTOMODEL_TARGET_ALLOWLIST", "secret": "s", "key": "k"}]}},
            "k8s.secrets[0].env",
        ),
    ],
)
def test_a_launcher_section_cannot_grant_permissions_through_its_environment(
    cli, write_config, tmp_path, launcher, where
):
    section = {name: {**value, "job_dir": str(tmp_path / "job")} for name, value in launcher.items()}
    result = cli("finetune", "toy", "-c", write_config(section), "--dry-run")
    assert_one_paragraph_error(result, where, "grant itself permissions", "--allow-target")
    assert not (tmp_path / "job").exists()


def test_allow_target_lets_a_run_call_a_module(cli, write_config, tmp_path):
    out = tmp_path / "out"
    cfg = write_config({"output": {"dir": str(out)}, "model": {"_target_": "collections.Counter", "a": 2}})
    assert_one_paragraph_error(cli("finetune", "toy", "-c", cfg), "outside the allowed modules", "--allow-target")
    assert cli("finetune", "toy", "-c", cfg, "--allow-target", "collections").returncode == 0
    assert _record(out)["built"] == "Counter({'a': 2})"


def test_config_show_says_what_may_be_called_and_where_each_allowance_came_from(cli, write_config, monkeypatch):
    monkeypatch.setenv("AUTOMODEL_TARGET_ALLOWLIST", "from_env")
    allow = ["--allow-target", "mine", "--allow-target", "os.path.join"]
    result = cli("config", "show", "-c", write_config({"a": 1}), *allow)
    assert result.returncode == 0, result.stderr
    header = result.stdout.split("a: 1")[0]
    assert "#   default: automodel, torch, transformers" in header
    assert "#   --allow-target: mine, os.path.join" in header
    assert "#   $AUTOMODEL_TARGET_ALLOWLIST: from_env" in header
    assert "never (unless an allowance names that exact callable)" in header
    assert yaml.safe_load(result.stdout) == {"a": 1}


def test_the_dry_run_command_passes_the_permissions_to_the_workers(cli, write_config):
    cfg = write_config({"model": {"_target_": "collections.Counter", "trust_remote_code": True}})
    args = ["--allow-target", "collections", "--trust-remote-code", "--dry-run"]
    command = cli("finetune", "toy", "-c", cfg, "--nproc-per-node", "2", *args).stdout.strip().splitlines()[-1]
    assert command.endswith(f"finetune.toy -c {cfg} --allow-target collections --trust-remote-code")


def test_permissions_reach_torchrun_workers(automodel, write_config, tmp_path):
    out = tmp_path / "out"
    model = {"_target_": "collections.Counter", "trust_remote_code": True}
    cfg = write_config({"output": {"dir": str(out)}, "model": model})
    result = automodel(
        "finetune", "toy", "-c", cfg, "--nproc-per-node", "2", "--allow-target", "collections", "--trust-remote-code"
    )
    assert result.returncode == 0, result.stderr
    assert [_record(out, rank)["built"] for rank in (0, 1)] == ["Counter({'trust_remote_code': True})"] * 2


def test_a_worker_takes_the_permissions_on_its_command_line(write_config, tmp_path):
    out = tmp_path / "out"
    cfg = write_config({"output": {"dir": str(out)}, "model": {"_target_": "collections.Counter"}})
    worker = [sys.executable, "-m", "automodel.cli.worker", "finetune.toy", "-c", str(cfg)]
    refused = subprocess.run(worker, capture_output=True, text=True, env=clean_env())
    assert refused.returncode == 2 and "outside the allowed modules" in refused.stderr
    allowed = subprocess.run([*worker, "--allow-target=collections"], capture_output=True, text=True, env=clean_env())
    assert allowed.returncode == 0, allowed.stderr


def test_remote_jobs_get_the_permissions_on_their_command_line(cli, write_config, tmp_path, monkeypatch):
    monkeypatch.setenv("AUTOMODEL_TARGET_ALLOWLIST", "from_env")
    job_dir = tmp_path / "job"
    cfg = write_config({"model": {"name": "m"}, "slurm": {"job_dir": str(job_dir)}})
    overrides = ["--model.trust_remote_code", "true"]
    result = cli("finetune", "toy", "-c", cfg, "--allow-target", "mine", *overrides, "--dry-run")
    assert result.returncode == 0, result.stderr
    script = (job_dir / "sbatch.sh").read_text()
    assert "-c /" in script and "--allow-target mine --allow-target from_env --trust-remote-code" in script
    assert "allow" not in (job_dir / "config.yaml").read_text()


def test_a_k8s_job_gets_the_permissions_in_its_pod_command():
    config = config_from_dict({"model": {"trust_remote_code": True}})
    options = LaunchOptions(allow_targets=("mine",))
    job = Job(route_by_name("finetune.toy"), config, Path("cfg.yaml"), options, "k8s", {"image": "img"})
    manifest = render_manifest(job, parse_k8s_section({"image": "img"}, route_name="finetune.toy"))
    workload = list(yaml.safe_load_all(manifest))[1]
    command = workload["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]["command"]
    assert command[-3:] == ["--allow-target", "mine", "--trust-remote-code"]


# ---- 3. trust_remote_code only when the user asks -----------------------------------------------------------------


def test_trust_remote_code_in_the_config_is_refused_naming_key_file_and_line(cli, write_config):
    cfg = write_config("model:\n  name: m\n  trust_remote_code: true\n")
    assert_one_paragraph_error(
        cli("finetune", "toy", "-c", cfg),
        f"{cfg}:3: `model.trust_remote_code`",
        "run Python code shipped with the model",
        "--trust-remote-code",
        "AUTOMODEL_TRUST_REMOTE_CODE=1",
        "--model.trust_remote_code true",
    )


def test_trust_remote_code_is_allowed_by_flag_environment_or_typed_override(cli, write_config, monkeypatch):
    trusting = write_config("model:\n  name: m\n  trust_remote_code: true\n")
    plain = write_config("model:\n  name: m\n", name="plain.yaml")
    assert cli("config", "validate", "-c", trusting, "--trust-remote-code").returncode == 0
    assert cli("config", "validate", "-c", plain, "--model.trust_remote_code", "true").returncode == 0
    monkeypatch.setenv("AUTOMODEL_TRUST_REMOTE_CODE", "1")
    assert cli("config", "validate", "-c", trusting).returncode == 0


# ---- 4. secrets never printed or written ---------------------------------------------------------------------


def test_the_dry_run_command_line_hides_secret_override_values(cli, write_config, tmp_path):
    cfg = write_config({"output": {"dir": str(tmp_path)}, "hub": {"repo": "x"}})
    result = cli("finetune", "toy", "-c", cfg, "--dry-run", "--hub.hf_token", SECRET, "--+wandb", "{api_key: abc-456}")
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout and "abc-456" not in result.stdout
    assert result.stdout.strip().endswith("--hub.hf_token '<redacted>' --+wandb '<redacted>'")


def test_slurm_writes_literal_secrets_as_environment_references(cli, write_config, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    job_dir = tmp_path / "job"
    cfg = write_config(
        {
            "hub": {"hf_token": "file-secret-1", "cache": "${env:HF_TOKEN}"},
            "data": {"token": "${env:HF_TOKEN}"},
            "slurm": {"job_dir": str(job_dir)},
        }
    )
    result = cli("finetune", "toy", "-c", cfg, "--+wandb.api_key", "cli-secret-2", "--dry-run")
    assert result.returncode == 0, result.stderr
    written = yaml.safe_load((job_dir / "config.yaml").read_text())
    assert written["hub"] == {"hf_token": "${env:AUTOMODEL_SECRET_HUB_HF_TOKEN}", "cache": "${env:HF_TOKEN}"}
    assert written["wandb"] == {"api_key": "${env:AUTOMODEL_SECRET_WANDB_API_KEY}"}
    assert written["data"] == {"token": "${env:HF_TOKEN}"}
    everything = result.stdout + result.stderr + _files_text(job_dir)
    for secret in ("file-secret-1", "cli-secret-2", SECRET):
        assert secret not in everything
    assert "AUTOMODEL_SECRET_HUB_HF_TOKEN, AUTOMODEL_SECRET_WANDB_API_KEY" in result.stdout


def test_slurm_hands_the_secrets_to_sbatch_in_its_environment_only(automodel, write_config, tmp_path):
    job_dir, bin_dir = tmp_path / "job", tmp_path / "bin"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text('#!/bin/sh\n[ "$AUTOMODEL_SECRET_HUB_HF_TOKEN" = file-secret-1 ] && echo 4242 || exit 9\n')
    sbatch.chmod(0o755)
    cfg = write_config({"hub": {"hf_token": "file-secret-1"}, "slurm": {"job_dir": str(job_dir)}})
    result = automodel("finetune", "toy", "-c", cfg, env=clean_env(PATH=f"{bin_dir}:/usr/bin:/bin"))
    assert result.returncode == 0, result.stderr
    assert "submitted SLURM job 4242" in result.stdout
    assert "file-secret-1" not in result.stdout + result.stderr + _files_text(job_dir)


def test_k8s_refuses_a_literal_secret_naming_the_key_not_the_value(cli, write_config, tmp_path):
    job_dir = tmp_path / "job"
    cfg = write_config({"hub": {"hf_token": "file-secret-1"}, "k8s": {"image": "img", "job_dir": str(job_dir)}})
    result = cli("finetune", "toy", "-c", cfg, "--dry-run")
    assert_one_paragraph_error(result, "`hub.hf_token`", "ConfigMap", "${env:HF_TOKEN}", "k8s.secrets")
    assert "file-secret-1" not in result.stdout + result.stderr
    assert not job_dir.exists()


def test_k8s_keeps_environment_references(write_config):
    config = config_from_dict({"hub": {"hf_token": "${env:HF_TOKEN}"}})
    job = Job(route_by_name("finetune.toy"), config, Path("cfg.yaml"), LaunchOptions(), "k8s", {"image": "img"})
    manifest = render_manifest(job, parse_k8s_section({"image": "img"}, route_name="finetune.toy"))
    assert "hf_token: ${env:HF_TOKEN}" in manifest


BAD_CONFIGS = [
    ({"model": {"_target_": "${env:HF_TOKEN}"}}, []),
    ({"model": {"_target_": "collections.Counter", "_partial_": "${env:HF_TOKEN}"}}, ["--allow-target", "collections"]),
    ({"model": {"_target_": "collections.Counter", "nmae": "${env:HF_TOKEN}"}}, []),
    ({"behaviour": "echo", "value": "${env:HF_TOKEN}"}, []),
    ({"run": "${env:HF_TOKEN}"}, ["--run.name", "x"]),
    ({"recipe": "${env:HF_TOKEN}"}, []),
    ({"note": "${env:HF_TOKEN}", "path": "/data/${env:HF_TOKEN}/${nope}"}, []),
]


@pytest.mark.parametrize(("content", "extra"), BAD_CONFIGS)
def test_no_output_or_file_shows_a_secret_read_from_the_environment(
    cli, write_config, tmp_path, monkeypatch, content, extra
):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.chdir(tmp_path)
    cfg = write_config({"output": {"dir": str(tmp_path / "out")}, **content})
    runs = [
        cli("finetune", "toy", "-c", cfg, *extra),
        cli("finetune", "toy", "-c", cfg, *extra, "--dry-run"),
        cli("config", "validate", "-c", cfg, *extra),
        cli("config", "show", "-c", cfg, *extra),
        cli(cfg, *extra),
    ]
    assert any(r.returncode == 2 for r in runs)
    for result in runs:
        assert SECRET not in result.stdout + result.stderr, result
    assert SECRET not in _files_text(tmp_path)


def test_a_dry_run_with_secrets_from_the_environment_shows_none(cli, write_config, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    cfg = write_config({"output": {"dir": str(tmp_path)}, "note": "${env:HF_TOKEN}", "path": "/d/${env:HF_TOKEN}"})
    result = cli("finetune", "toy", "-c", cfg, "--dry-run", "--+hub.token", "${env:HF_TOKEN}")
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout and "note: <redacted>" in result.stdout


def test_a_worker_writes_no_secret_into_its_error_file(write_config, tmp_path):
    cfg = write_config({"output": {"dir": str(tmp_path)}, "behaviour": "echo", "value": "${env:HF_TOKEN}"})
    error_dir = tmp_path / "errors"
    error_dir.mkdir()
    env = clean_env(HF_TOKEN=SECRET, AUTOMODEL_ERROR_DIR=str(error_dir))
    worker = [sys.executable, "-m", "automodel.cli.worker", "finetune.toy", "-c", str(cfg)]
    assert subprocess.run(worker, capture_output=True, text=True, env=env).returncode == 2
    text = (error_dir / "rank0.txt").read_text()
    assert SECRET not in text and "${env:HF_TOKEN}" in text


# ---- 5. YAML alias bomb ------------------------------------------------------------------------------------------


def test_a_yaml_bomb_is_refused_naming_the_file(cli, write_config):
    lines = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 12)]
    cfg = write_config("\n".join(lines) + "\n")
    assert_one_paragraph_error(cli("config", "validate", "-c", cfg), str(cfg), "expands to more than 1,000,000 values")


# ---- 6. the wrong route ----------------------------------------------------------------------------------------


def test_a_recipe_key_naming_another_route_is_refused(cli, write_config, tmp_path):
    cfg = write_config({"recipe": "pretrain.toy", "output": {"dir": str(tmp_path / "out")}})
    assert_one_paragraph_error(
        cli("finetune", "toy", "-c", cfg),
        f"{cfg}:1: `recipe`",
        "the config says it is for `pretrain.toy`, but the command runs `finetune toy`",
        f"automodel pretrain toy -c {cfg}",
    )
    assert not (tmp_path / "out").exists()
    assert cli("pretrain", "toy", "-c", cfg).returncode == 0
