"""The import contracts of docs/architecture.md section 2 hold for the tree and break when a rule is broken."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import workspace

LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent))


def _lint(root: Path) -> subprocess.CompletedProcess:
    packages = workspace.discover(root)
    config = root / "contracts.ini"
    config.write_text(workspace.contracts_ini(packages))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(workspace.source_dirs(packages))}
    return subprocess.run([LINT_IMPORTS, str(config)], capture_output=True, text=True, env=env, cwd=root)


def _package(root: Path, folder: str, module: str, body: str = "", dependencies: tuple[str, ...] = ()) -> None:
    """Write a minimal workspace member ``folder`` (packages/x or apps/x) providing ``module``, declaring
    ``dependencies``."""
    path = root / folder
    src = path / "src" / Path(*module.split("."))
    src.mkdir(parents=True)
    (src / "__init__.py").write_text(textwrap.dedent(body))
    name = folder.split("/")[-1]
    (path / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "0.1.0"\ndependencies = {json.dumps(list(dependencies))}\n'
        f'[tool.uv.build-backend]\nmodule-name = "{module}"\n'
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    _package(tmp_path, "packages/automodel-alpha", "automodel.alpha")
    _package(tmp_path, "packages/automodel-beta", "automodel.beta")
    _package(tmp_path, "packages/automodel-config", "automodel.config")
    _package(tmp_path, "packages/automodel-recipes-one", "automodel.recipes.one", "import automodel.alpha\n")
    _package(tmp_path, "packages/automodel-recipes-two", "automodel.recipes.two")
    _package(tmp_path, "apps/cli", "automodel.cli", "import automodel.config\n", ("automodel-config",))
    return tmp_path


def test_the_repository_keeps_every_contract():
    result = _lint(workspace.ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_a_tree_that_follows_the_rules_keeps_every_contract(tree):
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Components do not import each other KEPT" in result.stdout


@pytest.mark.parametrize(
    ("module", "body", "broken"),
    [
        ("automodel/alpha", "import automodel.beta\n", "Components do not import each other BROKEN"),
        ("automodel/beta", "from automodel.config import load_config\n", "Components do not import each other BROKEN"),
        ("automodel/recipes/two", "import automodel.recipes.one\n", "Recipe packages do not import each other BROKEN"),
        ("automodel/alpha", "import automodel.recipes.one\n", "Components import no recipe and no app BROKEN"),
        ("automodel/recipes/one", "import automodel.cli\n", "Nothing imports an app BROKEN"),
        (
            "automodel/cli",
            "import automodel.alpha\n",
            "cli imports only the components it declares BROKEN",
        ),
    ],
)
def test_breaking_a_rule_breaks_its_contract(tree, module, body, broken):
    init = next(tree.glob(f"*/*/src/{module}/__init__.py"))
    init.write_text(init.read_text() + body)
    result = _lint(tree)
    assert result.returncode != 0
    assert broken in result.stdout, result.stdout
