"""tools/release.py run as a user runs it, on a throwaway clone of this repository: the checks that
refuse a release, a dry run, and a real upload to a local pypiserver followed by the tag."""

from __future__ import annotations

import email.parser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import release
from package_index import local_index, release_env

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "automodel-config"
PASSWORD = "not-to-be-printed-0451"


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, env=release_env(), check=True, capture_output=True, text=True)
    return done.stdout


def _release(repo: Path, *args: str, package: str = PACKAGE, **env: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(repo / "tools" / "release.py"), package, *args]
    return subprocess.run(command, cwd=repo, env=release_env(**env), capture_output=True, text=True, timeout=300)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A clone of the committed repository (no tags) with this tree's tools/, committed."""
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "-q", "--no-tags", str(ROOT), str(clone)], env=release_env(), check=True)
    for name in ("release.py", "workspace.py"):
        shutil.copy(ROOT / "tools" / name, clone / "tools" / name)
    if _git(clone, "status", "--porcelain"):
        _git(clone, "add", "--all")
        _git(clone, "commit", "-qm", "test: this tree's tools/")
    return clone


def _version(repo: Path) -> str:
    return str(release.find_release(PACKAGE, repo).version)


def _refusal(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def test_dry_run_prints_the_files_the_index_and_the_tag_and_changes_nothing(repo):
    version = _version(repo)
    done = _release(repo, "--dry-run", "--index-url", "http://127.0.0.1:9/")
    assert done.returncode == 0, done.stderr
    stem = f"automodel_config-{version}"
    assert f"{stem}-py3-none-any.whl  (" in done.stdout
    assert f"{stem}.tar.gz  (" in done.stdout
    assert "bytes)" in done.stdout
    assert "index: http://127.0.0.1:9/" in done.stdout
    assert f"tag: {PACKAGE}-v{version}" in done.stdout
    assert "nothing was uploaded" in done.stdout
    assert _git(repo, "tag", "--list") == ""


def test_an_existing_tag_at_the_version_refuses(repo):
    version = _version(repo)
    _git(repo, "tag", "--annotate", "-m", "released", f"{PACKAGE}-v{version}")
    stderr = _refusal(_release(repo, "--dry-run"))
    assert f"{PACKAGE} {version} is not higher than its last release, {version} (tag {PACKAGE}-v{version})" in stderr


def test_a_lower_tagged_release_lets_a_higher_version_through(repo):
    _git(repo, "tag", "--annotate", "-m", "old", f"{PACKAGE}-v0.0.1")
    assert _release(repo, "--dry-run").returncode == 0


def test_a_changelog_without_the_version_section_refuses(repo):
    version = _version(repo)
    changelog = repo / "packages" / PACKAGE / "CHANGELOG.md"
    changelog.write_text(changelog.read_text().replace(f"## {version}\n", "## Unreleased\n"))
    _git(repo, "commit", "-qam", "drop the section")
    stderr = _refusal(_release(repo, "--dry-run"))
    assert f"no `## {version}` section" in stderr
    assert "CHANGELOG.md" in stderr


def test_a_dirty_tree_refuses_unless_a_dry_run_allows_it(repo):
    (repo / "stray.txt").write_text("uncommitted\n")
    stderr = _refusal(_release(repo, "--dry-run"))
    assert "uncommitted changes" in stderr
    assert "stray.txt" in stderr
    assert _release(repo, "--dry-run", "--allow-dirty").returncode == 0


def test_an_unknown_package_and_a_missing_index_refuse(repo):
    done = subprocess.run(
        [sys.executable, str(repo / "tools" / "release.py"), "automodel-nope", "--dry-run"],
        cwd=repo,
        env=release_env(),
        capture_output=True,
        text=True,
    )
    assert "no workspace package named 'automodel-nope'" in _refusal(done)
    assert "--index-url" in _refusal(_release(repo))


def test_metadata_gaps_names_each_missing_field():
    bare = email.parser.Parser().parsestr("Metadata-Version: 2.4\nName: x\nVersion: 1.0\n\n# x\n")
    gaps = release.metadata_gaps(bare, "# x\n")
    assert gaps == [
        "the long description's content type is not set, not text/markdown",
        "no license (license)",
        "no Requires-Python (requires-python)",
        "no Classifier (classifiers)",
        "no Project-URL ([project.urls])",
    ]
    full = email.parser.Parser().parsestr(
        "Metadata-Version: 2.4\nName: x\nVersion: 1.0\nLicense-Expression: MIT\nRequires-Python: >=3.10\n"
        "Classifier: Programming Language :: Python :: 3\nProject-URL: Source, https://example.invalid\n"
        "Description-Content-Type: text/markdown\n\n# x\n"
    )
    assert release.metadata_gaps(full, "# x\n") == []
    assert release.metadata_gaps(bare, "# x\n", needs_urls=False)[-1] == "no Classifier (classifiers)"
    assert release.metadata_gaps(full, "# y\n") == ["the long description is not the package's README.md"]


def test_the_public_index_refuses_a_package_without_project_urls_and_others_warn(repo):
    stderr = _refusal(_release(repo, "--dry-run", "--index-url", "https://upload.pypi.org/legacy/"))
    assert "no Project-URL ([project.urls])" in stderr
    assert str(Path("packages", PACKAGE, "pyproject.toml")) in stderr
    done = _release(repo, "--dry-run", "--index-url", "http://127.0.0.1:9/")
    assert done.returncode == 0, done.stderr
    assert "has no [project.urls]" in done.stderr


def test_the_examples_sdist_carries_the_examples_and_builds_the_wheel(repo):
    done = _release(repo, "--dry-run", "--index-url", "http://127.0.0.1:9/", package="automodel-examples")
    assert done.returncode == 0, done.stderr
    version = release.find_release("automodel-examples", repo).version
    assert f"automodel_examples-{version}.tar.gz  (" in done.stdout
    assert f"automodel_examples-{version}-py3-none-any.whl  (" in done.stdout


@pytest.fixture
def pypiserver(tmp_path: Path):
    """A local pypiserver accepting unauthenticated uploads: yields (upload URL, its package folder)."""
    served = tmp_path / "served"
    with local_index(served) as url:
        yield url, served


def test_a_release_uploads_sdist_and_wheel_tags_and_installs_from_the_index(repo, pypiserver, tmp_path):
    url, served = pypiserver
    version = _version(repo)
    done = _release(repo, "--index-url", url, UV_PUBLISH_USERNAME="release", UV_PUBLISH_PASSWORD=PASSWORD)
    assert done.returncode == 0, done.stdout + done.stderr
    assert PASSWORD not in done.stdout + done.stderr
    stem = f"automodel_config-{version}"
    assert sorted(p.name for p in served.iterdir()) == [f"{stem}-py3-none-any.whl", f"{stem}.tar.gz"]

    tag = f"{PACKAGE}-v{version}"
    assert _git(repo, "tag", "--list") == f"{tag}\n"
    assert _git(repo, "cat-file", "-t", tag) == "tag\n"  # annotated
    message = _git(repo, "tag", "--list", "--format=%(contents)", tag)
    assert message.startswith(f"{PACKAGE} {version}\n\n")
    assert release.changelog_section(release.find_release(PACKAGE, repo)) in message

    venv = tmp_path / "user-venv"
    subprocess.run(["uv", "venv", "--quiet", str(venv)], check=True)
    install = ["uv", "pip", "install", "--quiet", "--no-deps", "--python", str(venv), "--no-cache"]
    subprocess.run([*install, "--index-url", f"{url}simple/", f"{PACKAGE}=={version}"], check=True)
    show = "import importlib.metadata as m; print(m.version('automodel-config'))"
    installed = subprocess.run([str(venv / "bin" / "python"), "-c", show], capture_output=True, text=True, check=True)
    assert installed.stdout.strip() == version


def test_an_index_url_is_printed_without_the_credentials_written_in_it():
    assert (
        release.shown("https://bob:secret@upload.example.invalid/legacy/")
        == "https://***@upload.example.invalid/legacy/"
    )
    assert release.shown("http://127.0.0.1:8080/") == "http://127.0.0.1:8080/"
