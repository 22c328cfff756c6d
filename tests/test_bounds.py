"""The README's dependency bounds hold (tools/bounds.py --check on this tree), and the check finds a bound
that is too low, or a version that gained a name after its first commit, in a small git repository."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import bounds
import pytest

GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Bounds Test",
    "GIT_AUTHOR_EMAIL": "bounds-test@example.invalid",
    "GIT_COMMITTER_NAME": "Bounds Test",
    "GIT_COMMITTER_EMAIL": "bounds-test@example.invalid",
}


def test_every_bound_between_automodel_packages_holds_the_policy(capsys):
    status = bounds.main(["--check"])
    assert status == 0, capsys.readouterr().out


def _package(root: Path, name: str, version: str, requires: str, init: str) -> None:
    """Write packages/automodel-<name>: a pyproject at ``version`` requiring ``requires``, and its __init__.py."""
    folder = root / "packages" / f"automodel-{name}"
    (folder / "src" / "automodel" / name).mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "automodel-{name}"\nversion = "{version}"\n'
        f"dependencies = [{requires}]\n\n"
        f'[tool.uv.build-backend]\nmodule-name = "automodel.{name}"\n',
        encoding="utf-8",
    )
    (folder / "src" / "automodel" / name / "__init__.py").write_text(init, encoding="utf-8")


def _commit(root: Path, message: str) -> None:
    for args in (["add", "-A"], ["commit", "-q", "-m", message]):
        subprocess.run(["git", *args], cwd=root, env=GIT_ENV, check=True)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """Three commits: automodel-core 0.1.0 with ``load``; 0.2.0 adds ``save``, which automodel-recipe starts
    importing while it still requires ``>=0.1.0``; then ``Trainer`` comes to core with no version bump."""
    subprocess.run(["git", "init", "-q", str(tmp_path)], env=GIT_ENV, check=True)
    recipe = '"automodel-core>=0.1.0", "torch>=2.6"'
    _package(tmp_path, "core", "0.1.0", "", "def load(): ...\n")
    _package(tmp_path, "recipe", "0.1.0", recipe, "from automodel.core import load\n")
    _commit(tmp_path, "core 0.1.0")
    _package(tmp_path, "core", "0.2.0", "", "def load(): ...\ndef save(): ...\n")
    _package(tmp_path, "recipe", "0.1.0", recipe, "from automodel.core import load, save\n")
    _commit(tmp_path, "core 0.2.0: save")
    _package(tmp_path, "core", "0.2.0", "", "def load(): ...\ndef save(): ...\nclass Trainer: ...\n")
    _commit(tmp_path, "core: Trainer, version unchanged")
    return tmp_path


def test_a_too_low_bound_is_reported_with_the_missing_name_then_fixed(repo, capsys):
    assert bounds.main(["--check"], root=repo) == 1
    out = capsys.readouterr().out
    assert "automodel-recipe -> automodel-core: declared >=0.1.0, policy >=0.2.0,<0.3" in out
    assert "too low: automodel-core 0.1.0 lacks automodel.core.save; all of it is first in 0.2.0" in out
    assert "upper bound missing or wrong: the policy's is <0.3" in out

    assert bounds.main(["--fix"], root=repo) == 0
    pyproject = (repo / "packages" / "automodel-recipe" / "pyproject.toml").read_text(encoding="utf-8")
    assert 'dependencies = ["automodel-core>=0.2.0,<0.3", "torch>=2.6"]' in pyproject
    assert bounds.main(["--check"], root=repo) == 0


def test_a_name_added_after_a_versions_first_commit_asks_for_a_new_version(repo, capsys):
    recipe = repo / "packages" / "automodel-recipe"
    (recipe / "src" / "automodel" / "recipe" / "__init__.py").write_text("from automodel.core import Trainer\n")
    assert bounds.main(["--check"], root=repo) == 1
    out = capsys.readouterr().out
    assert "automodel-core 0.2.0 is not a safe bound: 0.2.0 (" in out
    assert "lacks automodel.core.Trainer" in out
    assert "automodel-core 0.2.0 gained it later, bump it" in out

    assert bounds.main(["--fix"], root=repo) == 1  # nothing to write until core has a new version
    _package(repo, "core", "0.2.1", "", "def load(): ...\ndef save(): ...\nclass Trainer: ...\n")
    assert bounds.main(["--fix"], root=repo) == 0
    assert '"automodel-core>=0.2.1,<0.3"' in (recipe / "pyproject.toml").read_text(encoding="utf-8")
