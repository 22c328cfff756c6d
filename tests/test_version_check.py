"""tools/version_check.py passes on this tree, and in a small git repository finds a released version whose
source changed, a name removed from ``__all__`` without a minor bump, and a version with no changelog section."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import version_check

GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Version Check Test",
    "GIT_AUTHOR_EMAIL": "version-check-test@example.invalid",
    "GIT_COMMITTER_NAME": "Version Check Test",
    "GIT_COMMITTER_EMAIL": "version-check-test@example.invalid",
}
CORE = Path("packages", "automodel-core")


def test_every_package_of_this_tree_passes(capsys):
    status = version_check.main([])
    assert status == 0, capsys.readouterr().out


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=root, env=GIT_ENV, check=True, capture_output=True)


def _core(root: Path, version: str, names: list[str], changelog: tuple[str, ...] | None = None) -> None:
    """Write packages/automodel-core at ``version``: its ``__init__.py`` defines and exports ``names``, its
    CHANGELOG.md has a section for each of ``changelog`` (default: ``version`` and the ones already there)."""
    folder = root / CORE
    (folder / "src" / "automodel" / "core").mkdir(parents=True, exist_ok=True)
    (folder / "pyproject.toml").write_text(
        f'[project]\nname = "automodel-core"\nversion = "{version}"\n\n'
        '[tool.uv.build-backend]\nmodule-name = "automodel.core"\n',
        encoding="utf-8",
    )
    source = "".join(f"def {name}(): ...\n" for name in names) + f"\n__all__ = {sorted(names)!r}\n"
    (folder / "src" / "automodel" / "core" / "__init__.py").write_text(source, encoding="utf-8")
    log = folder / "CHANGELOG.md"
    if changelog is None:
        before = log.read_text(encoding="utf-8").splitlines() if log.is_file() else []
        changelog = (version, *(line[3:] for line in before if line.startswith("## ")))
    text = "# Changelog\n" + "".join(f"\n## {v}\n- changes\n" for v in dict.fromkeys(changelog))
    log.write_text(text, encoding="utf-8")


def _commit(root: Path, message: str) -> None:
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", message)


def _check(root: Path, capsys) -> tuple[int, str]:
    status = version_check.main([], root=root)
    return status, capsys.readouterr().out


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """automodel-core 0.1.0 exporting ``load`` and ``save``; a later commit of 0.1.0 adds ``Trainer``."""
    _git(tmp_path, "init", "-q")
    _core(tmp_path, "0.1.0", ["load", "save"])
    _commit(tmp_path, "core 0.1.0")
    _core(tmp_path, "0.1.0", ["load", "save", "Trainer"])
    _commit(tmp_path, "core 0.1.0: Trainer")
    return tmp_path


def test_a_released_version_whose_source_changed_asks_for_a_bump(repo, capsys):
    _git(repo, "tag", "--annotate", "-m", "released", "automodel-core-v0.1.0")
    assert _check(repo, capsys) == (0, "every package's version matches its tags, its changelog and its __all__\n")

    _core(repo, "0.1.0", ["load", "save", "Trainer", "evaluate"])
    status, out = _check(repo, capsys)
    assert status == 1
    assert "automodel-core 0.1.0 is released (tag automodel-core-v0.1.0) but packages/automodel-core differs" in out
    assert f"Bump the version in {CORE / 'pyproject.toml'}" in out

    _core(repo, "0.1.1", ["load", "save", "Trainer", "evaluate"])
    assert _check(repo, capsys)[0] == 0


def test_a_version_below_the_last_release_is_refused(repo, capsys):
    _git(repo, "tag", "--annotate", "-m", "released", "automodel-core-v0.2.0")
    status, out = _check(repo, capsys)
    assert status == 1
    assert "automodel-core 0.1.0 is not higher than its last release, 0.2.0 (tag automodel-core-v0.2.0)" in out


@pytest.mark.parametrize("released", [False, True], ids=["from-history", "from-tag"])
def test_a_name_removed_from_all_needs_a_minor_bump(repo, capsys, released):
    if released:
        _git(repo, "tag", "--annotate", "-m", "released", "automodel-core-v0.1.0")
    _core(repo, "0.1.1", ["load"])
    _commit(repo, "core 0.1.1: drop save and Trainer")
    status, out = _check(repo, capsys)
    assert status == 1
    where = "tag automodel-core-v0.1.0" if released else "its last commit"
    assert f"automodel-core 0.1.1 removes Trainer, save from automodel.core.__all__ (in 0.1.0, {where}" in out
    assert "set the version to 0.2 or higher" in out

    _core(repo, "0.2.0", ["load"], changelog=("0.2.0", "0.1.0"))
    assert _check(repo, capsys)[0] == 0


def test_a_version_without_a_changelog_section_is_refused(repo, capsys):
    _core(repo, "0.1.1", ["load", "save", "Trainer"], changelog=("0.1.0",))
    status, out = _check(repo, capsys)
    assert status == 1
    assert "has no `## 0.1.1` section" in out and "CHANGELOG.md" in out
