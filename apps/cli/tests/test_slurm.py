"""The slurm: launcher: the sbatch script (golden files), the job directory, and every bad section."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from cli_helpers import assert_one_paragraph_error, clean_env

from automodel.cli.errors import CliError
from automodel.cli.job import Job, split_launcher
from automodel.cli.launch import LaunchOptions
from automodel.cli.routes import route_by_name
from automodel.cli.slurm import parse_slurm_section, render_script
from automodel.config import config_from_dict

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("AUTOMODEL_UPDATE_GOLDEN") == "1"


def _job(section: dict, **options) -> Job:
    config = config_from_dict({"model": {"size": 3}, "slurm": section})
    name, plain, stripped = split_launcher(config)
    return Job(route_by_name("finetune.toy"), stripped, Path("cfg.yaml"), LaunchOptions(**options), name, plain)


def _script(section: dict, **options) -> str:
    job = _job(section, **options)
    settings = parse_slurm_section(job.section, job.route.name, job.options.nproc_per_node)
    return render_script(job, settings, Path("/work/project"))


def _matches_golden(text: str, name: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), f"{name} changed; rerun with AUTOMODEL_UPDATE_GOLDEN=1 if intended"


ONE_NODE = {"job_dir": "/jobs/toy-1", "python": "python3", "time": "00:30:00", "partition": "debug"}
FOUR_NODES = {
    "job_name": "llama-sft",
    "nodes": 4,
    "gpus_per_node": 8,
    "cpus_per_task": 64,
    "mem": "0",
    "time": "04:00:00",
    "account": "research",
    "partition": "batch",
    "qos": "high",
    "exclusive": True,
    "constraint": "h100",
    "container_image": "nvcr.io/nvidia/pytorch:25.01-py3",
    "container_mounts": ["/lustre/data:/data", "/lustre/ckpt:/ckpt"],
    "env": {"NCCL_DEBUG": "WARN", "HF_TOKEN": "${env:HF_TOKEN}"},
    "setup": ["module load cuda/12.8"],
    "extra_sbatch_args": ["--mail-type=END"],
    "signal_grace_s": 300,
    "job_dir": "/lustre/jobs/llama-sft",
}


def test_one_node_script_matches_its_golden_file() -> None:
    _matches_golden(_script(ONE_NODE), "slurm_1_node.sh")


def test_four_node_script_matches_its_golden_file_and_holds_no_secret() -> None:
    os.environ["HF_TOKEN"] = "hf_not_in_the_script"
    try:
        script = _script(FOUR_NODES)
    finally:
        del os.environ["HF_TOKEN"]
    _matches_golden(script, "slurm_4_nodes.sh")
    assert "hf_not_in_the_script" not in script and "HF_TOKEN" not in script
    assert "--nproc-per-node=8" in script and "--nnodes=4" in script
    assert "#SBATCH --signal=B:USR1@300" in script and "#SBATCH --requeue" in script


def test_the_launcher_section_is_removed_from_the_config_the_recipe_receives() -> None:
    job = _job(ONE_NODE)
    assert "slurm" not in job.config
    assert "slurm" not in job.config_yaml() and "size: 3" in job.config_yaml()


def test_nproc_per_node_flag_sets_the_processes_per_node() -> None:
    assert "--nproc-per-node=4" in _script(ONE_NODE, nproc_per_node=4)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"nodse": 2}, "slurm.nodse is not a slurm setting; did you mean `nodes`?"),
        ({"nodes": 0}, "slurm.nodes must be an integer of at least 1, got 0"),
        ({"nodes": "two"}, "slurm.nodes must be an integer of at least 1"),
        ({"env": {"WANDB_API_KEY": "abc123"}}, "slurm.env.WANDB_API_KEY holds a secret"),
        ({"env": {"HF_TOKEN": "${env:OTHER}"}}, "a passed-through variable keeps its name"),
        ({"container_mounts": ["/a:/a"]}, "slurm.container_mounts needs slurm.container_image"),
        ({"exclusive": "yes"}, "slurm.exclusive must be true or false"),
        ({"extra_sbatch_args": ["-N 2"]}, "give each option as --name=value"),
    ],
)
def test_a_bad_section_names_the_key_and_what_to_do(section, message) -> None:
    with pytest.raises(CliError, match=message.replace("(", r"\(").replace("$", r"\$").replace("{", r"\{")):
        parse_slurm_section(section, "finetune.toy")


def test_dry_run_writes_the_script_and_config_into_the_job_dir_and_submits_nothing(automodel, write_config, tmp_path):
    job_dir = tmp_path / "job"
    cfg = write_config({"recipe": "finetune.toy", "model": {"size": 3}, "slurm": {"nodes": 2, "job_dir": str(job_dir)}})
    result = automodel(
        "finetune", "toy", "-c", cfg, "--dry-run", "--model.size", "5", env=clean_env(PATH="/usr/bin:/bin")
    )
    assert result.returncode == 0, result.stderr
    assert f"sbatch script written to {job_dir}/sbatch.sh" in result.stdout
    assert (job_dir / "sbatch.sh").read_text() in result.stdout
    config = (job_dir / "config.yaml").read_text()
    assert "slurm" not in config and "size: 5" in config
    assert "auto_resume" not in config  # this config has no checkpoint section
    assert not list(job_dir.glob("*.partial"))


def test_without_sbatch_the_error_suggests_dry_run(automodel, write_config, tmp_path):
    cfg = write_config({"recipe": "finetune.toy", "slurm": {"job_dir": str(tmp_path / "job")}})
    result = automodel("finetune", "toy", "-c", cfg, env=clean_env(PATH=str(tmp_path)))
    assert_one_paragraph_error(result, "sbatch is not on PATH", "--dry-run")


def test_multi_node_flags_do_not_combine_with_a_slurm_section(automodel, write_config, tmp_path):
    cfg = write_config({"slurm": {"nodes": 2, "job_dir": str(tmp_path / "job")}})
    assert_one_paragraph_error(automodel("finetune", "toy", "-c", cfg, "--nnodes", "2"), "slurm.nodes")


def test_both_launcher_sections_are_refused(automodel, write_config):
    cfg = write_config({"slurm": {"nodes": 2}, "k8s": {"image": "x"}})
    assert_one_paragraph_error(automodel("finetune", "toy", "-c", cfg), "both `slurm:` and `k8s:`")
