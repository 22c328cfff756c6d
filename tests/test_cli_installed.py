"""The `automodel` command of the fully installed workspace starts and lists what is installed."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

AUTOMODEL = str(Path(sys.executable).parent / "automodel")


def test_automodel_help_runs():
    result = subprocess.run([AUTOMODEL, "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Usage: automodel" in result.stdout


def test_automodel_routes_runs():
    result = subprocess.run([AUTOMODEL, "routes"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_version_names_every_workspace_package_and_its_version():
    import workspace

    result = subprocess.run([AUTOMODEL, "--version"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    lines = set(result.stdout.splitlines())
    for package in workspace.discover():
        assert f"{package.name} {version(package.name)}" in lines


def config_rows(help_text: str) -> dict[str, str]:
    """``{key: what it holds}`` from a route's help: each key at column 2, its text after it or on the lines below."""
    rows: dict[str, str] = {}
    key = ""
    for line in help_text[help_text.index("Config of") :].splitlines()[1:]:
        if line.startswith("  ") and not line.startswith("   "):
            key, _, line = line.strip().partition(" ")
        rows[key] = " ".join([rows.get(key, ""), *line.split()]).strip()
    return rows


def test_a_recipe_route_help_lists_its_config_and_plot_is_offered():
    result = subprocess.run([AUTOMODEL, "finetune", "llm", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = config_rows(result.stdout)
    assert rows["model"] == "required; a _target_ section"
    assert rows["dataloader.num_workers"] == "int >= 0; data-loading processes; default 0"
    listed = subprocess.run([AUTOMODEL, "--help"], capture_output=True, text=True).stdout
    assert "plot" in [line.split()[0] for line in listed.splitlines() if line.startswith("  ")]


def test_a_recipe_route_help_shows_the_defaults_of_the_components_its_sections_go_to():
    from automodel.checkpoint import CheckpointSettings
    from automodel.training import StepScheduler

    result = subprocess.run([AUTOMODEL, "finetune", "llm", "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    rows = config_rows(result.stdout)
    for section, component in (("step_scheduler", StepScheduler), ("checkpoint", CheckpointSettings)):
        for key, parameter in inspect.signature(component).parameters.items():
            if key in ("dataloader", "dp_size"):  # the recipe passes these itself
                continue
            said = rows[f"{section}.{key}"]
            if parameter.default is parameter.empty:
                assert "default" not in said, (key, said)
            else:
                default = parameter.default
                shown = default if isinstance(default, str) else json.dumps(default)  # 5GB, null, true, 1
                assert said.endswith(f"; default {shown}"), (key, said)


def test_every_recipe_route_declares_the_schema_its_help_lists():
    from automodel.cli.routes import installed_routes
    from automodel.cli.schema_help import route_config_help

    recipes = [r for r in installed_routes() if r.package.startswith("automodel-recipes-")]
    assert recipes
    assert [r.name for r in recipes if not route_config_help(r)[1]] == []


def test_example_list_and_copy_give_a_config_whose_paths_exist_where_it_landed(tmp_path):
    listed = subprocess.run([AUTOMODEL, "example", "list"], capture_output=True, text=True)
    assert listed.returncode == 0, listed.stderr
    assert "llm_finetune/tiny_sft" in listed.stdout
    assert "automodel finetune llm -c examples/llm_finetune/tiny_sft.yaml" in listed.stdout
    copied = subprocess.run([AUTOMODEL, "example", "copy", "tiny_vlm", str(tmp_path)], capture_output=True, text=True)
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "examples" / "vlm_finetune" / "tiny_vlm.yaml").is_file()
    validated = subprocess.run(
        [AUTOMODEL, "config", "validate", "-c", "examples/vlm_finetune/tiny_vlm.yaml"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert validated.returncode == 0, validated.stderr
    unknown = subprocess.run([AUTOMODEL, "example", "copy", "nope", str(tmp_path)], capture_output=True, text=True)
    assert unknown.returncode == 2 and "no example `nope`" in unknown.stderr and "Traceback" not in unknown.stderr


def test_push_without_a_token_is_a_user_error_that_sends_nothing(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "config.json").write_text("{}")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([AUTOMODEL, "push", str(tmp_path), "user/tiny"], capture_output=True, text=True, env=env)
    assert result.returncode == 2, result.stderr
    assert "needs a Hugging Face token" in result.stderr and "Traceback" not in result.stderr
