"""Dependency bounds between the workspace's packages, computed from what each one imports and the git history.

    python tools/bounds.py --check    # print every requirement that breaks the policy; exit 1 if one does
    python tools/bounds.py --fix      # rewrite those requirement strings in the pyprojects (only those)

For each member, every ``from automodel.X import a, b`` and ``import automodel.X.y`` in its ``src``
(functions' lazy imports included) names something another workspace package must provide. The lowest
version of that package providing all of it (the floor) is found from the git history: the commits that
touched the package, oldest first, then the working tree. A version counts from its first commit: a
release of it may have been made there, so a name added by a later commit of the same version does not
make that version a safe bound (it is reported, and the next version is the floor). The policy (README,
"Dependency bounds"): every requirement on another automodel package reads ``>=LOW,<NEXT``; LOW is at
least the floor (a declared higher one stays: it may stand for behaviour no name shows, such as a new
keyword argument), and NEXT is the next minor version of the dependency's current version while it is
0.x (``0.7.2`` -> ``<0.8``), the next major version from 1.0 on."""

from __future__ import annotations

import argparse
import ast
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import workspace
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version


@dataclass(frozen=True)
class Use:
    """One thing a member imports from another package: a module, and a name in it (None: the module)."""

    module: str
    name: str | None = None

    def __str__(self) -> str:
        return self.module if self.name is None else f"{self.module}.{self.name}"


@dataclass(frozen=True)
class Snapshot:
    """A package's state at one commit (None: the working tree) and the version its pyproject gives there."""

    version: Version
    commit: str | None

    def __str__(self) -> str:
        return f"{self.version} ({self.commit[:7] if self.commit else 'working tree'})"


@dataclass(frozen=True)
class Bound:
    """What one member imports from one dependency, and the lowest snapshot of the dependency providing it all
    (``floor``; None when no version does from its first commit). ``upper`` is the policy's exclusive upper
    bound; ``unsafe`` holds one line per version passed over although a later commit of it provides the uses.
    """

    member: workspace.Package
    dependency: workspace.Package
    uses: frozenset[Use]
    floor: Snapshot | None
    upper: str
    unsafe: tuple[str, ...]


class Git:
    """Reads files at commits of one repository through one ``git cat-file --batch`` process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._batch = subprocess.Popen(
            ["git", "cat-file", "--batch"], cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def close(self) -> None:
        """Stop the ``git cat-file`` process."""
        self._batch.communicate()

    def __enter__(self) -> Git:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, *args: str) -> str:
        """Run ``git ARGS`` in the repository and return its stdout."""
        return subprocess.run(["git", *args], cwd=self.root, check=True, capture_output=True, text=True).stdout

    @cache  # noqa: B019 - one Git per run; the cache lives as long as it does
    def read(self, commit: str | None, path: Path) -> str | None:
        """Return the text of ``path`` (relative to the root) at ``commit`` (None: on disk), or None if absent."""
        if commit is None:
            file = self.root / path
            return file.read_text(encoding="utf-8") if file.is_file() else None
        self._batch.stdin.write(f"{commit}:{path.as_posix()}\n".encode())
        self._batch.stdin.flush()
        header = self._batch.stdout.readline().decode().split()
        if header[-1] == "missing" or header[1] != "blob":
            return None
        data = self._batch.stdout.read(int(header[2]) + 1)  # the content and a newline
        return data[:-1].decode("utf-8")


def owner(module: str, packages: list[workspace.Package]) -> workspace.Package | None:
    """Return the package whose import name is the longest prefix of ``module`` (None: no package's)."""
    owners = [p for p in packages if module == p.module or module.startswith(p.module + ".")]
    return max(owners, key=lambda p: len(p.module), default=None)


def uses_in(source: str) -> set[Use]:
    """Return every absolute ``automodel.*`` import in the Python ``source``, as Uses."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("automodel."):
            found.update(Use(node.module, alias.name) for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(Use(alias.name) for alias in node.names if alias.name.startswith("automodel."))
    return found


def imports_of(member: workspace.Package, packages: list[workspace.Package]) -> dict[str, set[Use]]:
    """Return, per other package's name, what ``member``'s ``src`` imports from it."""
    by_package: dict[str, set[Use]] = {}
    for file in sorted((member.path / "src").rglob("*.py")):
        for use in uses_in(file.read_text(encoding="utf-8")):
            package = owner(use.module, packages)
            if package is not None and package.name != member.name:
                by_package.setdefault(package.name, set()).add(use)
    return by_package


@cache
def defined_names(source: str) -> frozenset[str]:
    """Return the names a module's ``source`` binds at its top level (including under if/try) and its ``__all__``."""
    names: set[str] = set()
    statements = list(ast.parse(source).body)
    while statements:
        node = statements.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
            if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
                names.update(e.value for e in ast.walk(node.value) if isinstance(e, ast.Constant))
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            for field in ("body", "orelse", "finalbody", "handlers"):
                statements.extend(getattr(node, field, []))
        elif isinstance(node, ast.ExceptHandler):
            statements.extend(node.body)
    return frozenset(n for n in names if isinstance(n, str))


def module_source(module: str, package: workspace.Package, snapshot: Snapshot, git: Git) -> str | None:
    """Return the source of ``module`` (``x.py`` or ``x/__init__.py``) in ``package`` at ``snapshot``, or None."""
    base = (package.path / "src" / module.replace(".", "/")).relative_to(git.root)
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        text = git.read(snapshot.commit, path)
        if text is not None:
            return text
    return None


def provides(use: Use, package: workspace.Package, snapshot: Snapshot, git: Git) -> bool:
    """Return whether ``package`` at ``snapshot`` has ``use``'s module, defining its name or as a submodule."""
    source = module_source(use.module, package, snapshot, git)
    if source is None or use.name is None:
        return source is not None
    return use.name in defined_names(source) or module_source(str(use), package, snapshot, git) is not None


def missing(uses: frozenset[Use], package: workspace.Package, snapshot: Snapshot, git: Git) -> list[str]:
    """Return, sorted, the uses that ``package`` at ``snapshot`` does not provide."""
    return sorted(str(u) for u in uses if not provides(u, package, snapshot, git))


def version_of(pyproject: str) -> Version:
    """Return the ``[project] version`` of a pyproject.toml's text."""
    return Version(tomllib.loads(pyproject)["project"]["version"])


@cache
def snapshots(package: workspace.Package, git: Git) -> tuple[Snapshot, ...]:
    """Return ``package`` at every commit that touched its folder, oldest first, then in the working tree."""
    folder = package.path.relative_to(git.root)
    commits = git.run("log", "--reverse", "--format=%H", "--", folder.as_posix()).split()
    found = [Snapshot(version_of(git.read(c, folder / "pyproject.toml") or ""), c) for c in commits]
    return (*found, Snapshot(version_of(git.read(None, folder / "pyproject.toml") or ""), None))


def by_version(history: tuple[Snapshot, ...]) -> dict[Version, list[Snapshot]]:
    """Group ``history`` by version, in order of each version's first appearance (a version never comes back)."""
    grouped: dict[Version, list[Snapshot]] = {}
    for snapshot in history:
        grouped.setdefault(snapshot.version, []).append(snapshot)
    return grouped


def upper_bound(current: Version) -> str:
    """Return the policy's exclusive upper bound for a dependency now at ``current``: the next minor while 0.x."""
    return f"0.{current.minor + 1}" if current.major == 0 else f"{current.major + 1}"


def first_snapshot(package: workspace.Package, version: Version, git: Git) -> Snapshot | None:
    """Return the first snapshot of ``package`` at ``version`` (what a release of it holds), or None if it never was."""
    return next((s for s in snapshots(package, git) if s.version == version), None)


def compute_bound(member: workspace.Package, dependency: workspace.Package, uses: set[Use], git: Git) -> Bound:
    """Return the Bound of ``member`` on ``dependency``: the first version whose first snapshot provides ``uses``
    (None when none does, e.g. when they came after the current version's first commit without a bump)."""
    history = snapshots(dependency, git)
    wanted, unsafe, floor = frozenset(uses), [], None
    for version, group in by_version(history).items():
        lacking = missing(wanted, dependency, group[0], git)
        if not lacking:
            floor = group[0]
            break
        if any(not missing(wanted, dependency, s, git) for s in group[1:]):
            unsafe.append(f"{dependency.name} {version} is not a safe bound: {group[0]} lacks {', '.join(lacking)}")
    return Bound(member, dependency, wanted, floor, upper_bound(history[-1].version), tuple(unsafe))


def declared(member: workspace.Package) -> dict[str, Requirement]:
    """Return ``member``'s requirements on other automodel packages, by the package's name."""
    project = tomllib.loads((member.path / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = [Requirement(r) for r in project.get("dependencies", [])]
    return {r.name: r for r in requirements if r.name.startswith("automodel-")}


def bounds(root: Path, git: Git) -> list[Bound]:
    """Return the Bound of every workspace member on every other member it imports from or declares, sorted."""
    packages = workspace.discover(root)
    by_name = {p.name: p for p in packages}
    result = []
    for member in packages:
        imported = imports_of(member, packages)
        for name in sorted((imported.keys() | declared(member).keys()) & by_name.keys()):
            result.append(compute_bound(member, by_name[name], imported.get(name, set()), git))
    return result


def lowest_allowed(member: workspace.Package, root: Path, git: Git) -> dict[str, Snapshot]:
    """Return, per automodel package that ``member`` requires, the first snapshot of the lowest version its
    requirement allows (what the ``lowest`` nox session builds); ValueError when that version never was."""
    by_name = {p.name: p for p in workspace.discover(root)}
    allowed = {}
    for name, requirement in declared(member).items():
        low = lower_bound(requirement)
        snapshot = first_snapshot(by_name[name], low, git) if low else None
        if snapshot is None:
            raise ValueError(f"{member.name} requires {requirement}: its lower bound is no version {name} ever had")
        allowed[name] = snapshot
    return allowed


def lower_bound(requirement: Requirement) -> Version | None:
    """Return the version of ``requirement``'s ``>=`` clause, or None when it has none."""
    return next((Version(s.version) for s in requirement.specifier if s.operator == ">="), None)


def policy(bound: Bound, requirement: Requirement) -> str | None:
    """Return the specifier the policy gives ``requirement``: ``>=LOW,<UPPER`` with LOW its declared lower bound
    or ``bound``'s floor, whichever is higher (a higher one may stand for behaviour no name shows, such as a
    new keyword); None when there is no floor."""
    if bound.floor is None:
        return None
    low = max(lower_bound(requirement) or bound.floor.version, bound.floor.version)
    return f">={low},<{bound.upper}"


def too_low(bound: Bound, low: Version | None, git: Git) -> str:
    """Return the line saying why the lower bound ``low`` (None: none) of ``bound``'s requirement is too low."""
    name = bound.dependency.name
    if low is None:
        reason = "  lower bound missing"
    else:
        snapshot = first_snapshot(bound.dependency, low, git)
        lacking = missing(bound.uses, bound.dependency, snapshot, git) if snapshot else ["the version itself"]
        reason = f"  too low: {name} {low} lacks {', '.join(lacking)}"
    if bound.floor is not None:
        return f"{reason}; all of it is first in {bound.floor}"
    current = snapshots(bound.dependency, git)[-1].version
    return f"{reason}; no version has it all from its first commit: {name} {current} gained it later, bump it"


def findings(bound: Bound, requirement: Requirement | None, git: Git) -> list[str]:
    """Return why ``requirement`` (None: not declared) breaks the policy for ``bound``; empty when it holds."""
    head = f"{bound.member.name} -> {bound.dependency.name}:"
    if requirement is None:
        return [f"{head} imports {', '.join(sorted(map(str, bound.uses)))} but does not declare it"]
    wanted = policy(bound, requirement)
    if wanted is not None and requirement.specifier == SpecifierSet(wanted):
        return []
    low = lower_bound(requirement)
    problems = []
    if low is None or bound.floor is None or low < bound.floor.version:
        problems.append(too_low(bound, low, git))
    if f"<{bound.upper}" not in {str(s) for s in requirement.specifier}:
        problems.append(f"  upper bound missing or wrong: the policy's is <{bound.upper}")
    if not problems:
        problems.append("  clauses other than the policy's >= and <")
    return [f"{head} declared {requirement.specifier or 'no bound'}, policy {wanted or 'none yet'}", *problems]


def check(root: Path, git: Git) -> tuple[list[str], list[str]]:
    """Return the notes (each unsafe version passed over) and the findings (each requirement breaking the
    policy) of ``--check``."""
    notes, problems = [], []
    for bound in bounds(root, git):
        notes.extend(n for n in bound.unsafe if n not in notes)
        problems.extend(findings(bound, declared(bound.member).get(bound.dependency.name), git))
    return notes, problems


def rewrite(pyproject: str, specifiers: dict[str, str]) -> str:
    """Return ``pyproject``'s text with the strings naming a package of ``specifiers`` inside
    ``dependencies = [...]`` given that specifier; nothing else changes."""
    block = re.search(r"^dependencies\s*=\s*\[.*?\]", pyproject, flags=re.MULTILINE | re.DOTALL)
    if block is None:
        return pyproject

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        return f'"{name}{specifiers[name]}"' if name in specifiers else match.group(0)

    new_block = re.sub(r'"(automodel-[a-z0-9-]+)[^"]*"', replace, block.group(0))
    return pyproject[: block.start()] + new_block + pyproject[block.end() :]


def fix(root: Path, git: Git) -> tuple[list[Path], list[Bound]]:
    """Give every declared requirement the policy's specifier in its member's pyproject.toml; return the files
    changed and the bounds left alone because no version gives what the member imports."""
    specifiers: dict[Path, dict[str, str]] = {}
    left = []
    for bound in bounds(root, git):
        requirement = declared(bound.member).get(bound.dependency.name)
        wanted = policy(bound, requirement) if requirement else None
        if wanted is None:
            left.append(bound)
        else:
            specifiers.setdefault(bound.member.path / "pyproject.toml", {})[bound.dependency.name] = wanted
    changed = []
    for pyproject, wanted in specifiers.items():
        text = pyproject.read_text(encoding="utf-8")
        new = rewrite(text, wanted)
        if new != text:
            pyproject.write_text(new, encoding="utf-8")
            changed.append(pyproject)
    return changed, left


def main(argv: list[str] | None = None, root: Path = workspace.ROOT) -> int:
    """Run ``--check`` or ``--fix`` (from ``argv``, default the command line) on ``root``; return the exit status:
    1 when ``--check`` finds a bound off the policy or ``--fix`` leaves one it cannot compute, else 0."""
    parser = argparse.ArgumentParser(prog="tools/bounds.py", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="print every bound off the policy; exit 1 if one is")
    mode.add_argument("--fix", action="store_true", help="rewrite the requirements to the policy's bounds")
    args = parser.parse_args(argv)
    with Git(root) as git:
        if args.fix:
            changed, left = fix(root, git)
            for path in changed:
                print(f"rewrote {path.relative_to(root)}")
            for bound in left:
                print(f"left {bound.member.name} -> {bound.dependency.name} alone:", end=" ")
                print("not declared" if bound.floor else f"no version gives it all; bump {bound.dependency.name}")
            return 1 if left else 0
        notes, problems = check(root, git)
    print("\n".join([*notes, *(problems or ["every bound between automodel packages holds the policy"])]))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
