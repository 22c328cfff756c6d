"""`automodel config validate` and `automodel config show`."""

from __future__ import annotations

from cli_helpers import assert_one_paragraph_error, clean_env


def test_validate_accepts_a_config_whose_targets_and_keywords_exist(write_config, automodel):
    cfg = write_config(
        {
            "counter": {"_target_": "collections.Counter"},
            "model": {"_target_": "automodel_test_routes.toy.ToyError"},
        }
    )
    result = automodel(
        "config",
        "validate",
        "-c",
        cfg,
        "--allow-target",
        "collections",
        env=clean_env(AUTOMODEL_TARGET_ALLOWLIST="automodel_test_routes"),
    )
    assert result.returncode == 0, result.stderr
    assert "OK" in result.stdout


def test_validate_names_path_line_and_closest_keyword(write_config, automodel):
    cfg = write_config("opt:\n  _target_: automodel.cli.launch.LaunchOptions\n  nproc_per_nod: 2\n")
    result = automodel("config", "validate", "-c", cfg)
    assert_one_paragraph_error(result, f"{cfg}:3", "`opt.nproc_per_nod`", "did you mean `nproc_per_node`?")


def test_validate_lists_every_problem_at_once(write_config, automodel):
    cfg = write_config("a:\n  _target_: automodel.cli.launch.LaunchOption\nb:\n  _target_: os.system\nc: ${nope}\n")
    result = automodel("config", "validate", "-c", cfg)
    assert result.returncode == 2
    for fragment in ("3 problem(s)", "did you mean `automodel.cli.launch.LaunchOptions`?", "os.system", "${nope}"):
        assert fragment in result.stderr
    assert "Traceback" not in result.stderr


def test_show_applies_overrides_resolves_references_and_redacts_secrets(write_config, automodel):
    cfg = write_config("name: base\nrun_dir: /runs/${name}\nwandb:\n  api_key: abc123\n  project: p\n")
    result = automodel("config", "show", "-c", cfg, "--name", "exp", env=clean_env())
    assert result.returncode == 0, result.stderr
    assert "run_dir: /runs/exp" in result.stdout
    assert "abc123" not in result.stdout and "api_key: <redacted>" in result.stdout


def test_show_reads_environment_references(write_config, automodel):
    cfg = write_config("data:\n  root: ${env:DATA_ROOT,/data}\n  workers: ${env:WORKERS,2}\n")
    result = automodel("config", "show", "-c", cfg, env=clean_env(DATA_ROOT="/mnt/d"))
    assert result.returncode == 0, result.stderr
    assert "root: /mnt/d" in result.stdout and "workers: 2" in result.stdout
