"""Every package keeps the layout of docs/architecture.md section 1: metadata, README, CHANGELOG, namespaces."""

from __future__ import annotations

import importlib
import importlib.metadata
import re
import subprocess
import sys

import pytest
import workspace

PACKAGES = workspace.discover()


def test_the_workspace_has_the_config_package_and_the_cli():
    assert {"automodel-config", "automodel-cli"} <= {p.name for p in PACKAGES}


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_package_has_readme_with_install_line_and_changelog_with_its_version(package):
    readme = (package.path / "README.md").read_text()
    assert f"pip install {package.name}" in readme
    assert "## API" in readme or "## Public API" in readme
    version = importlib.metadata.version(package.name)
    assert f"## {version}" in (package.path / "CHANGELOG.md").read_text()


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_package_version_matches_its_dunder_version(package):
    module = importlib.import_module(package.module)
    assert module.__version__ == importlib.metadata.version(package.name)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_namespace_levels_have_no_init(package):
    src = package.path / "src"
    assert not (src / "automodel" / "__init__.py").exists()
    assert not (src / "automodel" / "recipes" / "__init__.py").exists()
    assert (src / package.module.replace(".", "/") / "__init__.py").exists()


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_package_has_tests_and_requires_the_python_ci_runs(package):
    assert any((package.path / "tests").glob("test_*.py"))
    text = (package.path / "pyproject.toml").read_text()
    assert re.search(r'requires-python\s*=\s*">=3\.11"', text)


def test_config_import_does_not_import_torch():
    code = "import sys, automodel.config; assert 'torch' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
