"""Running a route: in process, under torchrun, and --dry-run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from cli_helpers import AUTOMODEL, clean_env


def _records(out: Path) -> dict[int, dict]:
    return {int(p.stem[4:]): json.loads(p.read_text()) for p in out.glob("rank*.json")}


def _popen(args: list[str], env: dict | None = None) -> tuple[int, subprocess.CompletedProcess]:
    proc = subprocess.Popen(
        [AUTOMODEL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or clean_env()
    )
    out, err = proc.communicate(timeout=240)
    return proc.pid, subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_one_process_runs_the_recipe_inside_the_cli_process(tmp_path, write_config):
    cfg = write_config({"output": {"dir": str(tmp_path / "out")}, "lr": 1e-3})
    pid, result = _popen(["finetune", "toy", "-c", str(cfg)])
    assert result.returncode == 0, result.stderr
    record = _records(tmp_path / "out")[0]
    assert record["pid"] == pid
    assert record["world_size"] == 1
    assert record["config"] == {"output": {"dir": str(tmp_path / "out")}, "lr": 1e-3}


def test_overrides_set_add_and_delete_reach_the_recipe(tmp_path, write_config, automodel):
    cfg = write_config({"output": {"dir": "unused"}, "optimizer": {"lr": 1.0, "betas": [0.9, 0.99]}, "drop": 1})
    out = tmp_path / "out"
    result = automodel(
        "finetune",
        "toy",
        "-c",
        cfg,
        f"--output.dir={out}",
        "--optimizer.lr",
        "1e-4",
        "--optimizer.betas.1",
        "0.95",
        "--+wandb.project",
        "demo",
        "--~drop",
    )
    assert result.returncode == 0, result.stderr
    config = _records(out)[0]["config"]
    assert config["optimizer"] == {"lr": 1e-4, "betas": [0.9, 0.95]}
    assert config["wandb"] == {"project": "demo"}
    assert "drop" not in config


def test_yaml_with_recipe_key_runs_without_command_words(tmp_path, write_config, automodel):
    cfg = write_config({"recipe": "pretrain.toy", "output": {"dir": str(tmp_path / "out")}})
    result = automodel(cfg, "--+seed", "3")
    assert result.returncode == 0, result.stderr
    assert _records(tmp_path / "out")[0]["config"]["seed"] == 3


def test_the_recipe_exit_status_is_the_command_exit_status(tmp_path, write_config, automodel):
    cfg = write_config({"output": {"dir": str(tmp_path / "out")}, "exit_code": 7})
    assert automodel("finetune", "toy", "-c", cfg).returncode == 7


def test_a_recipe_crash_is_not_a_user_error_and_keeps_its_traceback(tmp_path, write_config, automodel):
    cfg = write_config({"output": {"dir": str(tmp_path)}, "behaviour": "crash"})
    result = automodel("finetune", "toy", "-c", cfg)
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "crashed on purpose" in result.stderr


def test_dry_run_prints_resolved_redacted_config_and_command_and_runs_nothing(tmp_path, write_config, automodel):
    out = tmp_path / "out"
    cfg = write_config({"output": {"dir": str(out)}, "name": "run", "tag": "${name}-1", "hf_token": "hf_secret"})
    result = automodel("finetune", "toy", "-c", cfg, "--dry-run", "--name", "exp")
    assert result.returncode == 0, result.stderr
    assert "tag: exp-1" in result.stdout
    assert "hf_secret" not in result.stdout and "<redacted>" in result.stdout
    command = result.stdout.strip().splitlines()[-1]
    assert command.endswith(f"-m automodel.cli.worker finetune.toy -c {cfg} --name exp")
    assert not out.exists()


def test_dry_run_with_several_processes_prints_a_standalone_torchrun_command(tmp_path, write_config, automodel):
    cfg = write_config({"output": {"dir": str(tmp_path / "out")}})
    result = automodel("finetune", "toy", "-c", cfg, "--nproc-per-node", "2", "--dry-run")
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip().splitlines()[-1]
    assert "-m automodel.cli.torchrun --nproc-per-node=2 --standalone -m automodel.cli.worker finetune.toy" in command


def test_dry_run_passes_multi_node_flags_to_torchrun(tmp_path, write_config, automodel):
    cfg = write_config({"output": {"dir": str(tmp_path / "out")}})
    result = automodel(
        "finetune",
        "toy",
        "-c",
        cfg,
        "--nproc-per-node",
        "4",
        "--nnodes",
        "2",
        "--node-rank",
        "1",
        "--master-addr",
        "node0",
        "--master-port",
        "29400",
        "--dry-run",
    )
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip().splitlines()[-1]
    for flag in ("--nproc-per-node=4", "--nnodes=2", "--node-rank=1", "--master-addr=node0", "--master-port=29400"):
        assert flag in command
    assert "--standalone" not in command


def test_dry_run_passes_a_c10d_rendezvous_endpoint_to_torchrun(tmp_path, write_config, automodel):
    cfg = write_config({"output": {"dir": str(tmp_path / "out")}})
    result = automodel("finetune", "toy", "-c", cfg, "--nnodes", "2", "--rdzv-endpoint", "node0:29400", "--dry-run")
    assert result.returncode == 0, result.stderr
    command = result.stdout.strip().splitlines()[-1]
    assert "--rdzv-backend=c10d --rdzv-endpoint=node0:29400" in command
    assert "--standalone" not in command


def test_rdzv_endpoint_and_master_addr_together_are_refused(tmp_path, write_config, automodel):
    cfg = write_config({"output": {"dir": str(tmp_path / "out")}})
    result = automodel("finetune", "toy", "-c", cfg, "--rdzv-endpoint", "a:1", "--master-addr", "b", "--dry-run")
    assert result.returncode == 2 and "--rdzv-endpoint and --master-addr" in result.stderr


def test_two_processes_run_under_torchrun_with_ranks_and_world_size(tmp_path, write_config):
    cfg = write_config({"output": {"dir": str(tmp_path / "out")}})
    pid, result = _popen(["finetune", "toy", "-c", str(cfg), "--nproc-per-node", "2"])
    assert result.returncode == 0, result.stderr
    records = _records(tmp_path / "out")
    assert sorted(records) == [0, 1]
    assert {r["world_size"] for r in records.values()} == {2}
    assert pid not in {r["pid"] for r in records.values()}


def test_a_user_error_inside_torchrun_workers_is_one_paragraph_and_exit_2(tmp_path, write_config, automodel):
    cfg = write_config({"output": {"dir": str(tmp_path)}, "behaviour": "user_error"})
    result = automodel("finetune", "toy", "-c", cfg, "--nproc-per-node", "2")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "automodel: error: toy: `behaviour` asked for a user error" in result.stderr


def test_inside_a_torchrun_worker_the_cli_runs_in_process(tmp_path, write_config):
    cfg = write_config({"output": {"dir": str(tmp_path / "out")}})
    env = clean_env(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0")
    pid, result = _popen(["finetune", "toy", "-c", str(cfg), "--nproc-per-node", "2"], env=env)
    assert result.returncode == 0, result.stderr
    assert _records(tmp_path / "out")[0]["pid"] == pid


def test_worker_module_runs_a_route_standalone(tmp_path, write_config):
    cfg = write_config({"output": {"dir": str(tmp_path / "out")}})
    args = [sys.executable, "-m", "automodel.cli.worker", "finetune.toy", "-c", str(cfg), "--+seed", "5"]
    result = subprocess.run(args, capture_output=True, text=True, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert _records(tmp_path / "out")[0]["config"]["seed"] == 5


def test_worker_module_reports_a_user_error_as_one_paragraph(tmp_path, write_config):
    cfg = write_config({"output": {"dir": str(tmp_path)}, "behaviour": "user_error"})
    args = [sys.executable, "-m", "automodel.cli.worker", "finetune.toy", "-c", str(cfg)]
    result = subprocess.run(args, capture_output=True, text=True, env=clean_env())
    assert result.returncode == 2
    assert result.stderr.startswith("automodel: error: toy:") and "Traceback" not in result.stderr
    assert os.path.exists(cfg)
