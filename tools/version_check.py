"""Version hygiene of every workspace package, checked in CI (the ``lint`` nox session).

    python tools/version_check.py

Prints one line per problem and exits 1 when:

- a package's current version is released (it has the tag ``<package>-v<version>``) and the package's
  folder differs from the tagged tree, so the published version would hide two contents;
- its current version is lower than its last release, or its CHANGELOG.md has no ``## <version>``
  section (tools/release.py's own checks);
- a name in its top-level ``__all__`` at the previous version is gone while the version did not reach
  the upper bound its dependants declare (the next minor while 0.x, the next major from 1.0 on). The
  previous version is the last release; with no release, the version before the current one in the git
  history, at its last commit (tools/bounds.py reads the history).

An unreleased version may change freely between releases, as long as the last two hold.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import bounds
import release
import workspace
from packaging.version import Version


def exported(source: str | None) -> frozenset[str]:
    """Return the names a module's ``source`` lists in its top-level ``__all__`` (empty without source or
    ``__all__``); ``__all__ = [...]``, ``__all__: list[str] = [...]`` and ``__all__ += [...]`` all count."""
    names: set[str] = set()
    for node in ast.parse(source or "").body:
        if not isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets):
            listed = {e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            names = names | listed if isinstance(node, ast.AugAssign) else listed
    return frozenset(names)


def current_release(package: workspace.Package) -> release.Release:
    """Return ``package`` as tools/release.py would release it now: its name, folder and pyproject version."""
    pyproject = (package.path / "pyproject.toml").read_text(encoding="utf-8")
    return release.Release(package.name, package.path, bounds.version_of(pyproject))


def differs_from(tag: str, path: Path, root: Path) -> bool:
    """Return whether the folder ``path`` (under ``root``) in the working tree differs from its tree at ``tag``."""
    folder = path.relative_to(root).as_posix()
    done = subprocess.run(["git", "diff", "--quiet", tag, "--", folder], cwd=root, capture_output=True, text=True)
    if done.returncode > 1:
        raise RuntimeError(f"`git diff --quiet {tag} -- {folder}` failed:\n{done.stderr.strip()}")
    return done.returncode == 1


def refusal(check: Callable[..., object], *args: object) -> list[str]:
    """Run the tools/release.py ``check`` on ``args``; return its refusal as a one-line list, or [] if it passes."""
    try:
        check(*args)
    except release.ReleaseError as refused:
        return [str(refused)]
    return []


def changed_release(current: release.Release, root: Path) -> list[str]:
    """Return a one-line problem when the folder of the released ``current`` differs from its tag's tree, else []."""
    if not differs_from(current.tag, current.path, root):
        return []
    folder = current.path.relative_to(root)
    return [
        f"{current.name} {current.version} is released (tag {current.tag}) but {folder} differs from the tagged "
        f"tree, so {current.version} would name two contents. Bump the version in {folder / 'pyproject.toml'} "
        "(and __version__) and add a CHANGELOG.md section for it."
    ]


def release_problems(current: release.Release, tags: dict[Version, str], root: Path) -> list[str]:
    """Return the problems of ``current`` against its package's release ``tags`` (version -> tag) and its
    changelog: a released version whose folder changed since its tag, a version lower than the last release,
    no ``## <version>`` section."""
    if current.version in tags:
        found = changed_release(current, root)
    else:
        found = refusal(release.check_version_is_new, current, root)
    return found + refusal(release.changelog_section, current)


def previous(
    package: workspace.Package, current: Version, tags: dict[Version, str], git: bounds.Git
) -> tuple[bounds.Snapshot, str] | None:
    """Return the Snapshot whose ``__all__`` the current one must keep, and where it comes from: the last release
    (tag), or with no tag the last commit at another version than ``current`` (the one just before it was set). None
    when there is none, or when ``current`` is not above the last release (release_problems reports that)."""
    if tags:
        last = max(tags)
        return (bounds.Snapshot(last, tags[last]), f"tag {tags[last]}") if current > last else None
    before = next((s for s in reversed(bounds.snapshots(package, git)) if s.version != current), None)
    return None if before is None else (before, f"its last commit, {before.commit[:7]}")


def api_problems(package: workspace.Package, current: Version, tags: dict[Version, str], git: bounds.Git) -> list[str]:
    """Return a one-line problem when names of ``package``'s top-level ``__all__`` at its previous version are
    gone now while ``current`` did not reach the policy's upper bound above that version; else []."""
    found = previous(package, current, tags, git)
    if found is None:
        return []
    before, where = found
    upper = bounds.upper_bound(before.version)
    now = bounds.module_source(package.module, package, bounds.Snapshot(current, None), git)
    removed = sorted(exported(bounds.module_source(package.module, package, before, git)) - exported(now))
    if not removed or current >= Version(upper):
        return []
    return [
        f"{package.name} {current} removes {', '.join(removed)} from {package.module}.__all__ (in {before.version}, "
        f"{where}) but stays below {upper}, the upper bound dependants declare (a removal needs a minor bump while "
        f"0.x, a major one from 1.0): set the version to {upper} or higher, with its CHANGELOG.md section, or put "
        "the names back."
    ]


def problems(root: Path, git: bounds.Git) -> list[str]:
    """Return every version-hygiene problem of the workspace members under ``root``, one line each."""
    found = []
    for package in workspace.discover(root):
        current = current_release(package)
        tags = release.released_versions(current, root)
        found += release_problems(current, tags, root) + api_problems(package, current.version, tags, git)
    return found


def main(argv: list[str] | None = None, root: Path = workspace.ROOT) -> int:
    """Check every package under ``root`` (``argv``: the command line, which takes no arguments but --help);
    print each problem, or one line saying there is none; return the exit status, 1 when there is a problem."""
    parser = argparse.ArgumentParser(prog="tools/version_check.py", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    with bounds.Git(root) as git:
        found = problems(root, git)
    print("\n".join(found or ["every package's version matches its tags, its changelog and its __all__"]))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
