"""Third-party lower bounds held at what is tested: the minor version uv.lock pins.

    python tools/tested_floors.py --check   # print each requirement whose floor is not the locked minor; exit 1
    python tools/tested_floors.py --fix     # rewrite those floors in the pyprojects

Every test session installs the versions uv.lock pins, so for the libraries whose API the packages lean
on (``TESTED``) a lower bound below the locked minor would promise versions nothing has run against
(transformers 4.x under 5.x's API, say). Each requirement on one of them, in any pyproject of the
workspace (dependencies, extras, dependency groups), must read ``>=X.Y`` (or ``>=X.Y.Z``) where X.Y is
the locked version's minor and not above it; other clauses (an upper bound) are kept. When ``uv lock
--upgrade`` moves a library to a new minor, the check fails until the floors follow.
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

import workspace
from bounds import lower_bound
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

TESTED = (
    "datasets",
    "diffusers",
    "huggingface-hub",
    "peft",
    "safetensors",
    "tokenizers",
    "torch",
    "torchdata",
    "transformers",
)
QUOTED = re.compile(r'"([^"]+)"')


def locked_versions(root: Path) -> dict[str, Version]:
    """Return the version uv.lock pins for each name in ``TESTED`` that it holds."""
    lock = tomllib.loads((root / "uv.lock").read_text(encoding="utf-8"))
    return {p["name"]: Version(p["version"]) for p in lock.get("package", []) if p["name"] in TESTED}


def pyprojects(root: Path) -> list[Path]:
    """Return the root pyproject.toml and every workspace member's."""
    return [root / "pyproject.toml", *(p.path / "pyproject.toml" for p in workspace.discover(root))]


def tested_floor(locked: Version) -> Version:
    """Return ``X.Y`` for the locked version ``X.Y.Z``."""
    return Version(".".join(map(str, locked.release[:2])))


def requirements_in(text: str) -> list[Requirement]:
    """Return every quoted string of a pyproject's text that parses as a requirement on a ``TESTED`` name."""
    found = []
    for quoted in QUOTED.findall(text):
        try:
            requirement = Requirement(quoted)
        except InvalidRequirement:
            continue
        if canonicalize_name(requirement.name) in TESTED:
            found.append(requirement)
    return found


def problem(requirement: Requirement, locked: Version) -> str | None:
    """Return why ``requirement``'s floor is not the locked minor ``locked`` allows, or None when it is."""
    floor = lower_bound(requirement)
    if floor is not None and floor.release[:2] == locked.release[:2] and floor <= locked:
        return None
    stated = f">={floor}" if floor is not None else "no lower bound"
    return f"{requirement}: {stated}, but uv.lock tests {locked}; the floor is >={tested_floor(locked)}"


def check(root: Path) -> list[str]:
    """Return one line per requirement on a ``TESTED`` library whose floor breaks the policy, by file."""
    locked = locked_versions(root)
    lines = []
    for pyproject in pyprojects(root):
        for requirement in requirements_in(pyproject.read_text(encoding="utf-8")):
            pinned = locked.get(canonicalize_name(requirement.name))
            found = problem(requirement, pinned) if pinned else f"{requirement}: uv.lock pins no version; run uv lock"
            if found:
                lines.append(f"{pyproject.relative_to(root)}: {found}")
    return lines


def with_floor(requirement: Requirement, floor: Version) -> str:
    """Return ``requirement`` as a string with its ``>=`` clause replaced by (or given) ``>=floor``."""
    kept = [str(s) for s in requirement.specifier if s.operator != ">="]
    extras = f"[{','.join(sorted(requirement.extras))}]" if requirement.extras else ""
    marker = f"; {requirement.marker}".replace('"', "'") if requirement.marker else ""
    return f"{requirement.name}{extras}{','.join([f'>={floor}', *kept])}{marker}"


def fix(root: Path) -> list[Path]:
    """Rewrite every floor off the policy to the locked minor; return the files changed."""
    locked = locked_versions(root)
    changed = []
    for pyproject in pyprojects(root):
        text = pyproject.read_text(encoding="utf-8")

        def replace(match: re.Match[str]) -> str:
            try:
                requirement = Requirement(match.group(1))
            except InvalidRequirement:
                return match.group(0)
            name = canonicalize_name(requirement.name)
            if name not in locked or problem(requirement, locked[name]) is None:
                return match.group(0)
            return f'"{with_floor(requirement, tested_floor(locked[name]))}"'

        new = QUOTED.sub(replace, text)
        if new != text:
            pyproject.write_text(new, encoding="utf-8")
            changed.append(pyproject)
    return changed


def main(argv: list[str] | None = None, root: Path = workspace.ROOT) -> int:
    """Run ``--check`` or ``--fix`` (from ``argv``, default the command line) on ``root``; return the exit
    status: 1 when ``--check`` finds a floor off the policy, else 0."""
    parser = argparse.ArgumentParser(prog="tools/tested_floors.py", description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--check", action="store_true", help="print every floor off the policy; exit 1 if one is")
    mode.add_argument("--fix", action="store_true", help="rewrite the floors to the locked minor versions")
    args = parser.parse_args(argv)
    if args.fix:
        for path in fix(root):
            print(f"rewrote {path.relative_to(root)}")
        return 0
    problems = check(root)
    print("\n".join(problems or [f"every floor on {', '.join(TESTED)} is the minor version uv.lock tests"]))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
