"""Release one workspace package: check it, build its sdist and wheel, upload them, tag the commit.

    python tools/release.py <package> [--dry-run] [--allow-dirty] [--index-url URL]

Checks, in order: the package exists; an index is given (``--index-url`` or
``$AUTOMODEL_RELEASE_INDEX_URL``; there is no public default) unless it is a dry run; its version
is higher than its last release (the git tags ``<package>-v<version>``); its CHANGELOG.md has a
``## <version>`` section; the working tree is clean. Then ``uv build`` builds the files, their
metadata is checked (``twine check --strict`` too where twine is importable), ``uv publish``
uploads them with the credentials uv reads from ``$UV_PUBLISH_USERNAME``/``PASSWORD``/``TOKEN``
(never printed here), and the annotated tag ``<package>-v<version>`` is created from the changelog
section. ``--dry-run`` does everything but the upload and the tag, and prints what it would publish.

A mistake the user can fix exits 2 with one paragraph saying what to do; a failed build, upload or
tag exits 1 with the tool's output.
"""

from __future__ import annotations

import argparse
import email.parser
import importlib.util
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.parse
import zipfile
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import workspace
from packaging.version import InvalidVersion, Version

INDEX_ENV = "AUTOMODEL_RELEASE_INDEX_URL"
REQUIRED_FIELDS = {
    "Requires-Python": "requires-python",
    "Classifier": "classifiers",
}
# Project URLs point at the public repository, which a package index's page links to. The packages
# carry none until that repository has an address: an upload to these hosts refuses without them,
# any other index (a company's, a test's) gets a warning.
PUBLIC_INDEX_HOSTS = ("upload.pypi.org", "test.pypi.org", "pypi.org")


class ReleaseError(Exception):
    """A reason to stop, printed as one paragraph; ``code`` is the exit status (2: the user's to fix)."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Release:
    """What is being released: the package's name, folder, version and the tag it will get."""

    name: str
    path: Path
    version: Version

    @property
    def tag(self) -> str:
        """The git tag of this release: ``<package>-v<version>``."""
        return f"{self.name}-v{self.version}"


def git(root: Path, *args: str, stdin: str | None = None) -> str:
    """Run ``git ARGS`` in ``root`` and return its stdout; a failure raises ReleaseError (exit 1)."""
    done = subprocess.run(["git", *args], cwd=root, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise ReleaseError(f"`git {' '.join(args)}` failed:\n{done.stderr.strip()}", code=1)
    return done.stdout


def find_release(name: str, root: Path) -> Release:
    """Return the Release of the workspace member distributed as ``name`` (its pyproject's version)."""
    packages = {p.name: p for p in workspace.discover(root)}
    if name not in packages:
        known = ", ".join(sorted(packages))
        raise ReleaseError(f"There is no workspace package named {name!r}. The packages are: {known}.")
    member = packages[name]
    text = (member.path / "pyproject.toml").read_text(encoding="utf-8")
    raw = tomllib.loads(text)["project"]["version"]
    try:
        return Release(name, member.path, Version(raw))
    except InvalidVersion:
        raise ReleaseError(f"{name}'s pyproject.toml has version {raw!r}, which is not a valid version.") from None


def released_versions(release: Release, root: Path) -> dict[Version, str]:
    """Return every released version of ``release``'s package, found from the git tags, with its tag."""
    prefix = f"{release.name}-v"
    found = {}
    for tag in git(root, "tag", "--list", f"{prefix}*").split():
        try:
            found[Version(tag[len(prefix) :])] = tag
        except InvalidVersion:
            continue  # another package whose name starts with this one's, or a stray tag
    return found


def check_version_is_new(release: Release, root: Path) -> None:
    """Refuse a version that is not higher than the package's last release (none released: any is fine)."""
    released = released_versions(release, root)
    if not released:
        return
    last = max(released)
    if release.version > last:
        return
    pyproject = release.path.relative_to(root) / "pyproject.toml"
    raise ReleaseError(
        f"{release.name} {release.version} is not higher than its last release, {last} (tag {released[last]}). "
        f"Bump the version in {pyproject} (and __version__, with a CHANGELOG.md section for it) before releasing."
    )


def changelog_section(release: Release) -> str:
    """Return the text under ``## <version>`` in the package's CHANGELOG.md; refuse if there is none."""
    changelog = release.path / "CHANGELOG.md"
    text = changelog.read_text(encoding="utf-8") if changelog.is_file() else ""
    heading = re.compile(rf"^## {re.escape(str(release.version))}(\s.*)?$", re.MULTILINE)
    match = heading.search(text)
    if match is None:
        raise ReleaseError(
            f"{changelog} has no `## {release.version}` section. Add one saying what changed in "
            f"{release.name} {release.version}; it becomes the release tag's message."
        )
    following = re.search(r"^## ", text[match.end() :], re.MULTILINE)
    end = match.end() + following.start() if following else len(text)
    return text[match.end() : end].strip()


def check_clean_tree(root: Path, allow_dirty: bool) -> None:
    """Refuse uncommitted or untracked files (``git status --porcelain``) unless ``allow_dirty``."""
    status = git(root, "status", "--porcelain")
    if status.strip() and not allow_dirty:
        listing = "\n".join(status.splitlines()[:10])
        raise ReleaseError(
            "The working tree has uncommitted changes, so the release would not match any commit. "
            f"Commit or stash them first (--allow-dirty lets a dry run go on):\n{listing}"
        )


def index_url(given: str | None, dry_run: bool) -> str | None:
    """Return the upload URL from ``--index-url`` or the environment; refuse none unless ``dry_run``."""
    url = given or os.environ.get(INDEX_ENV)
    if not url and not dry_run:
        raise ReleaseError(
            f"No package index to upload to: give one with --index-url URL or ${INDEX_ENV} "
            "(there is deliberately no default). Credentials come from $UV_PUBLISH_TOKEN or "
            "$UV_PUBLISH_USERNAME and $UV_PUBLISH_PASSWORD."
        )
    return url


def shown(url: str) -> str:
    """Return ``url`` fit to print: a user name or password written in it is replaced by ``***``."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc="***@" + parts.netloc.rsplit("@", 1)[1]))


def build(release: Release, out_dir: Path) -> list[Path]:
    """Build ``release``'s sdist, then its wheel from that sdist, into ``out_dir``; return the files built.

    Building the wheel from the sdist proves the sdist is complete (a user's pip builds from it).
    """
    command = ["uv", "build", "--package", release.name, "--out-dir", str(out_dir), "--no-progress"]
    done = subprocess.run(command, cwd=release.path, capture_output=True, text=True)
    if done.returncode != 0:
        raise ReleaseError(f"`{' '.join(command)}` failed:\n{done.stderr.strip()}", code=1)
    return sorted(p for p in out_dir.iterdir() if p.name.endswith((".whl", ".tar.gz")))


def read_metadata(path: Path) -> Message:
    """Return the core metadata of a built wheel (``*.dist-info/METADATA``) or sdist (``PKG-INFO``)."""
    if path.name.endswith(".whl"):
        with zipfile.ZipFile(path) as wheel:
            name = next(n for n in wheel.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
            text = wheel.read(name).decode("utf-8")
    else:
        with tarfile.open(path) as sdist:
            member = next(m for m in sdist.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
            text = sdist.extractfile(member).read().decode("utf-8")
    return email.parser.Parser().parsestr(text)


def metadata_gaps(metadata: Message, readme: str, needs_urls: bool = True) -> list[str]:
    """Return what a package index would miss in ``metadata`` (empty when nothing is missing).

    Checks: the README as a markdown long description, a license, requires-python, classifiers
    and, when ``needs_urls``, project URLs.
    """
    gaps = []
    content_type = metadata.get("Description-Content-Type", "")
    description = str(metadata.get_payload() or metadata.get("Description", "")).strip()
    if not content_type.startswith("text/markdown"):
        gaps.append(f"the long description's content type is {content_type or 'not set'}, not text/markdown")
    if not description:
        gaps.append("the long description (the README) is empty")
    elif description != readme.strip():
        gaps.append("the long description is not the package's README.md")
    if not (metadata.get("License-Expression") or metadata.get("License")):
        gaps.append("no license (license)")
    gaps += [f"no {key} ({field})" for key, field in REQUIRED_FIELDS.items() if not metadata.get_all(key)]
    if needs_urls and not metadata.get_all("Project-URL"):
        gaps.append("no Project-URL ([project.urls])")
    return gaps


def is_public_index(url: str | None) -> bool:
    """Return whether ``url`` uploads to the public PyPI or TestPyPI (None, a dry run's missing index: no)."""
    return url is not None and urllib.parse.urlsplit(url).hostname in PUBLIC_INDEX_HOSTS


def check_metadata(release: Release, files: list[Path], url: str | None) -> None:
    """Refuse built files whose metadata misses a field (see metadata_gaps) or fails ``twine check --strict``.

    Missing project URLs refuse only an upload to the public index (``is_public_index(url)``); otherwise
    they are a warning on stderr.
    """
    readme = (release.path / "README.md").read_text(encoding="utf-8")
    metadata = {path.name: read_metadata(path) for path in files}
    public = is_public_index(url)
    if not public and any(not m.get_all("Project-URL") for m in metadata.values()):
        print(
            f"release: warning: {release.name} has no [project.urls]; fine for {shown(url) if url else 'a dry run'}, "
            "but an upload to the public PyPI refuses without them.",
            file=sys.stderr,
        )
    gaps = {name: metadata_gaps(m, readme, needs_urls=public) for name, m in metadata.items()}
    problems = [f"{name}: {'; '.join(missing)}" for name, missing in gaps.items() if missing]
    if problems:
        pyproject = release.path / "pyproject.toml"
        raise ReleaseError(
            f"The built files' metadata is incomplete, so the index would show a bare page; add the fields "
            f"named in parentheses to {pyproject}:\n" + "\n".join(problems)
        )
    if importlib.util.find_spec("twine") is not None:
        command = [sys.executable, "-m", "twine", "check", "--strict", *map(str, files)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            raise ReleaseError(f"`twine check --strict` refused the built files:\n{done.stdout.strip()}")


def describe(release: Release, files: list[Path], url: str | None) -> str:
    """Return the lines saying what would be published: the files and sizes, the index and the tag."""
    lines = [f"{release.name} {release.version}: files to upload"]
    lines += [f"  {path.name}  ({path.stat().st_size:,} bytes)" for path in files]
    lines.append(f"index: {shown(url) if url else f'none given (a real release needs --index-url or ${INDEX_ENV})'}")
    lines.append(f"tag: {release.tag} (annotated, message from CHANGELOG.md ## {release.version})")
    return "\n".join(lines)


def upload(files: list[Path], url: str) -> None:
    """Upload ``files`` with ``uv publish`` to ``url``; uv reads the credentials from the environment."""
    command = ["uv", "publish", "--no-progress", "--publish-url", url, *map(str, files)]
    done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        raise ReleaseError(f"`uv publish` to {shown(url)} failed; nothing was tagged:\n{done.stderr.strip()}", code=1)


def check_can_tag(root: Path) -> None:
    """Refuse to upload when git has no identity to sign the tag with (the tag comes after the upload)."""
    try:
        git(root, "var", "GIT_COMMITTER_IDENT")
    except ReleaseError:
        raise ReleaseError(
            "git has no user.name and user.email, so the release tag could not be created after the "
            "upload. Set them (git config user.name ...; git config user.email ...) and run again."
        ) from None


def create_tag(release: Release, notes: str, root: Path) -> None:
    """Create the annotated tag ``<package>-v<version>`` at HEAD, its message the changelog section."""
    message = f"{release.name} {release.version}\n\n{notes}\n"
    try:
        git(root, "tag", "--annotate", "--file", "-", release.tag, "HEAD", stdin=message)
    except ReleaseError as error:
        raise ReleaseError(
            f"The files were uploaded, but tagging failed; create {release.tag} by hand. {error}", 1
        ) from None


def release_package(args: argparse.Namespace, root: Path) -> None:
    """Run the checks, the build and (unless ``args.dry_run``) the upload and the tag; print each outcome."""
    release = find_release(args.package, root)
    url = index_url(args.index_url, args.dry_run)
    check_version_is_new(release, root)
    notes = changelog_section(release)
    check_clean_tree(root, args.allow_dirty)
    if not args.dry_run:
        check_can_tag(root)
    with tempfile.TemporaryDirectory(prefix=f"release-{release.name}-") as tmp:
        files = build(release, Path(tmp))
        check_metadata(release, files, url)
        print(describe(release, files, url))
        if args.dry_run:
            print("Dry run: nothing was uploaded and no tag was created.")
            return
        upload(files, url)
    create_tag(release, notes, root)
    print(f"Uploaded {release.name} {release.version} and tagged {release.tag}; push it: git push origin {release.tag}")


def parse_args() -> argparse.Namespace:
    """Return the command line's package, --dry-run, --allow-dirty and --index-url (from ``sys.argv``)."""
    parser = argparse.ArgumentParser(prog="tools/release.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("package", help="the distribution name, e.g. automodel-config")
    parser.add_argument("--dry-run", action="store_true", help="check and build, but upload nothing and tag nothing")
    parser.add_argument("--allow-dirty", action="store_true", help="go on with uncommitted changes (dry runs only)")
    parser.add_argument("--index-url", help=f"the upload URL of the package index (default: ${INDEX_ENV})")
    args = parser.parse_args()
    if args.allow_dirty and not args.dry_run:
        parser.error("--allow-dirty is only for dry runs: a release is made from a clean, committed tree")
    return args


def main() -> int:
    """Release the package named on the command line from this repository; return the exit status (0, 1 or 2)."""
    try:
        release_package(parse_args(), workspace.ROOT)
    except ReleaseError as error:
        print(f"release: {error}", file=sys.stderr)
        return error.code
    return 0


if __name__ == "__main__":
    sys.exit(main())
