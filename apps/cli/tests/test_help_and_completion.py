"""What the command offers: a route's config (defaults too) in help, installed domains only, `--version`, completion."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest
from cli_helpers import assert_one_paragraph_error

from automodel.cli.app import main
from automodel.cli.routes import installed_routes, route_commands
from automodel.cli.schema_help import setting_text
from automodel.cli.tools import PROVIDERS, find_tool
from automodel.config import anything, boolean, integer, number, text


def domains(command: str) -> list[str]:
    return [r.domain for r in installed_routes() if r.command == command]


def complete(capsys, monkeypatch, line: str) -> list[str]:
    """Ask the command for bash completions of ``line`` (the cursor at its end), as the completion script does."""
    words = line.split() + ([""] if line.endswith(" ") else [])
    monkeypatch.setenv("_AUTOMODEL_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", line)
    monkeypatch.setenv("COMP_CWORD", str(len(words) - 1))
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main([])
    assert done.value.code == 0
    return capsys.readouterr().out.split()


def test_a_route_help_lists_the_sections_and_keys_of_its_schema(cli):
    result = cli("finetune", "toy", "--help")
    assert result.returncode == 0, result.stderr
    config = result.stdout[result.stdout.index("Config of finetune toy") :]
    rows = [" ".join(line.split()) for line in config.splitlines()[1:]]
    assert rows == [
        "recipe str",
        "slurm a section checked by its component",
        "behaviour one of: ok, user_error, crash, echo; what the toy does",
        "value any value; echoed by behaviour: echo",
        "model a _target_ section",
        "output required; a section of the output.* keys below",
        "output.dir str (not null); where rank<R>.json is written",
        "exit_code int >= 0; the exit status to return; default 0",
    ]
    assert "--nproc-per-node" in result.stdout and "Usage: automodel finetune toy [OPTIONS]" in result.stdout


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        (boolean(default=True), "bool; default true"),
        (integer(1, default=None), "int >= 1; default null"),
        (number(0, "the weight", default=0.5), "number >= 0; the weight; default 0.5"),
        (text(default="5GB", nullable=False), "str (not null); default 5GB"),
        (text(default="true"), 'str; default "true"'),
        (text(default=""), 'str; default ""'),
        (anything(default=(1, 10, 100)), "any value; default [1, 10, 100]"),
        (integer(0), "int >= 0"),
    ],
)
def test_a_key_with_a_known_default_says_it_as_yaml_would_read_it_back(setting, said):
    assert setting_text(setting) == said


def test_a_route_whose_module_cannot_be_imported_still_has_help_saying_so(cli):
    result = cli("finetune", "broken", "--help")
    assert result.returncode == 0, result.stderr
    assert "--config" in result.stdout
    said = " ".join(result.stdout.split())
    assert "Config: automodel_test_routes.missing_module cannot be imported (ModuleNotFoundError: No module" in said


def test_help_of_the_command_and_its_words_imports_no_recipe_and_no_torch():
    code = (
        "import sys\n"
        "from automodel.cli.app import main\n"
        "for argv in (['--help'], ['finetune', '--help'], ['--version']):\n"
        "    assert main(argv) == 0, argv\n"
        "assert 'torch' not in sys.modules and 'automodel_test_routes.toy' not in sys.modules\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_command_word_lists_only_its_installed_domains(cli):
    result = cli("pretrain", "--help")
    assert result.returncode == 0, result.stderr
    listed = result.stdout[result.stdout.index("Domains (installed recipe packages)") :].splitlines()[1:]
    assert [line.split()[0] for line in listed] == domains("pretrain")
    assert "toy" in domains("pretrain") and "vlm" not in domains("pretrain")  # finetune vlm alone is installed


def test_top_level_help_lists_every_installed_command_word_and_no_other(cli):
    result = cli("--help")
    commands = result.stdout[result.stdout.index("Commands:") : result.stdout.index("Installed routes")]
    words = [line.split()[0] for line in commands.splitlines()[1:] if line.strip()]
    builtins = [
        word for word in ("plot", "push", "routes", "config", "example") if word not in PROVIDERS or find_tool(word)
    ]
    assert words == [*builtins, *route_commands()]


def test_a_command_word_without_a_domain_names_the_installed_ones(cli):
    assert_one_paragraph_error(cli("pretrain"), "`pretrain` needs a domain", ", ".join(domains("pretrain")))


def test_version_prints_every_installed_automodel_distribution(cli):
    result = cli("--version")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for name in ("automodel-cli", "automodel-config", "automodel-test-routes"):
        assert f"{name} {version(name)}" in lines
    assert lines == sorted(lines) and all(line.startswith("automodel-") for line in lines)


def test_show_completion_prints_the_bash_completion_script(capsys, monkeypatch):
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")  # name the shell instead of detecting it
    with pytest.raises(SystemExit) as done:
        main(["--show-completion", "bash"])
    script = capsys.readouterr().out
    assert done.value.code == 0
    assert "complete -o default -F _automodel_completion automodel" in script
    assert "_AUTOMODEL_COMPLETE=complete_bash" in script


def test_completion_offers_command_words_and_installed_domains(capsys, monkeypatch):
    assert complete(capsys, monkeypatch, "automodel pre") == [w for w in route_commands() if w.startswith("pre")]
    assert complete(capsys, monkeypatch, "automodel pretrain ") == domains("pretrain")
    assert complete(capsys, monkeypatch, "automodel finetune t") == ["toy"]
    assert "--dry-run" in complete(capsys, monkeypatch, "automodel finetune toy --d")
    assert ("plot" in complete(capsys, monkeypatch, "automodel ")) == (find_tool("plot") is not None)
