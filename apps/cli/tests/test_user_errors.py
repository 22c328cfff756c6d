"""Every user mistake is one paragraph on stderr and exit 2, never a traceback."""

from __future__ import annotations

import pytest
from cli_helpers import assert_one_paragraph_error


@pytest.fixture
def good(write_config, tmp_path):
    return write_config(
        {"output": {"dir": str(tmp_path / "out")}, "model": {"_target_": "automodel.cli.launch.LaunchOptions"}}
    )


def test_missing_config_file(automodel, tmp_path):
    assert_one_paragraph_error(automodel("finetune", "toy", "-c", tmp_path / "nope.yaml"), "nope.yaml", "not found")


def test_config_path_is_a_directory(automodel, tmp_path):
    assert_one_paragraph_error(automodel("finetune", "toy", "-c", tmp_path), str(tmp_path), "directory")


def test_yaml_syntax_error_gives_line_and_column(automodel, write_config):
    cfg = write_config("model:\n  name: tiny\n  bad: [1, 2\nnext: 3\n")
    assert_one_paragraph_error(automodel("finetune", "toy", "-c", cfg), str(cfg), "invalid YAML", "line", "column")


def test_unknown_command_lists_installed_routes(automodel, good):
    assert_one_paragraph_error(automodel("fintune", "toy", "-c", good), "unknown command `fintune`", "finetune toy")


def test_unknown_domain_lists_the_command_domains(automodel, good):
    assert_one_paragraph_error(automodel("pretrain", "vlm", "-c", good), "unknown domain `vlm`", "toy")


def test_missing_domain_says_which_domains_exist(automodel, good):
    assert_one_paragraph_error(automodel("pretrain", "-c", good), "`pretrain` needs a domain", "toy")


def test_missing_config_option(automodel):
    assert_one_paragraph_error(automodel("finetune", "toy"), "no config file given", "-c")


def test_disallowed_target_is_refused_with_how_to_allow(automodel, write_config, tmp_path):
    cfg = write_config({"output": {"dir": str(tmp_path)}, "model": {"_target_": "os.system", "command": "true"}})
    assert_one_paragraph_error(
        automodel("finetune", "toy", "-c", cfg),
        "`model._target_`",
        "os.system",
        "--allow-target os.system",
        "AUTOMODEL_TARGET_ALLOWLIST",
    )


def test_misspelled_target_suggests_the_closest_name(automodel, write_config, tmp_path):
    cfg = write_config({"output": {"dir": str(tmp_path)}, "model": {"_target_": "automodel.cli.launch.LaunchOptionz"}})
    assert_one_paragraph_error(
        automodel("finetune", "toy", "-c", cfg), "did you mean `automodel.cli.launch.LaunchOptions`?"
    )


def test_unknown_keyword_names_the_yaml_path(automodel, write_config, tmp_path):
    cfg = write_config(
        {"output": {"dir": str(tmp_path)}, "model": {"_target_": "automodel.cli.launch.LaunchOptions", "dry_rnu": True}}
    )
    assert_one_paragraph_error(automodel("finetune", "toy", "-c", cfg), "`model.dry_rnu`", "did you mean `dry_run`?")


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        (["optimizer.lr", "1e-4"], "unexpected argument `optimizer.lr`"),
        (["--model..x", "1"], "malformed key"),
        (["--output.dir"], "has no value"),
        (["--~output.dir=3"], "takes no value"),
        (["--model.x", "[1, 2"], "not valid YAML"),
    ],
)
def test_bad_override_syntax(automodel, good, overrides, fragment):
    assert_one_paragraph_error(automodel("finetune", "toy", "-c", good, *overrides), fragment)


def test_unknown_section_without_plus_suggests_plus(automodel, good):
    result = automodel("finetune", "toy", "-c", good, "--wandb.project", "x")
    assert_one_paragraph_error(result, "no section `wandb`", "--+wandb.project")


def test_misspelled_section_suggests_the_closest(automodel, good):
    assert_one_paragraph_error(
        automodel("finetune", "toy", "-c", good, "--ouptut.dir", "x"), "did you mean `output`", "--+ouptut.dir"
    )


def test_missing_environment_variable_without_default(automodel, write_config, tmp_path):
    cfg = write_config({"output": {"dir": "${env:AUTOMODEL_TEST_UNSET_VAR}"}})
    assert_one_paragraph_error(
        automodel("finetune", "toy", "-c", cfg), "AUTOMODEL_TEST_UNSET_VAR is not set", "`output.dir`", str(cfg)
    )


def test_missing_environment_variable_in_dry_run(automodel, write_config):
    cfg = write_config({"token": "${env:AUTOMODEL_TEST_UNSET_VAR}"})
    assert_one_paragraph_error(automodel("finetune", "toy", "-c", cfg, "--dry-run"), "is not set")


def test_yaml_without_recipe_key(automodel, good):
    assert_one_paragraph_error(automodel(good), "no `recipe:` key")


def test_recipe_key_naming_an_unknown_route(automodel, write_config):
    cfg = write_config({"recipe": "finetune.nope"})
    assert_one_paragraph_error(automodel(cfg), "unknown domain `nope`")


def test_nproc_per_node_below_one(automodel, good):
    assert_one_paragraph_error(automodel("finetune", "toy", "-c", good, "--nproc-per-node", "0"), "at least 1")


def test_route_whose_module_is_missing(automodel, good):
    assert_one_paragraph_error(
        automodel("finetune", "broken", "-c", good), "cannot be imported", "automodel-test-routes"
    )


def test_a_recipe_user_error_is_one_paragraph(automodel, write_config, tmp_path):
    cfg = write_config({"output": {"dir": str(tmp_path)}, "behaviour": "user_error"})
    assert_one_paragraph_error(automodel("finetune", "toy", "-c", cfg), "toy: `behaviour` asked for a user error")


def test_an_option_missing_its_value_is_one_paragraph(automodel):
    assert_one_paragraph_error(automodel("finetune", "toy", "-c"), "'-c' requires an argument", "--help")


def test_a_non_integer_launcher_flag_is_one_paragraph(automodel, good):
    assert_one_paragraph_error(automodel("finetune", "toy", "-c", good, "--nproc-per-node", "two"), "nproc-per-node")
