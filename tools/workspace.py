"""The workspace's packages and the import contracts of docs/architecture.md section 2, found from the tree.

Used by noxfile.py (test matrix, lint, build) and by tests/test_import_contracts.py. A new
package under packages/ or apps/ is picked up without editing anything here:

- ``packages/automodel-recipes-*``  -> a recipe package (``automodel.recipes.<x>``)
- other ``packages/automodel-*``     -> a component (``automodel.<x>``)
- ``apps/*``                         -> an application (the CLI)
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Package:
    """One workspace member: distribution name, import name, folder and kind."""

    name: str
    module: str
    path: Path
    kind: str  # "component" | "recipe" | "app"
    dependencies: tuple[str, ...]


def _kind(path: Path) -> str:
    if path.parent.name == "apps":
        return "app"
    return "recipe" if path.name.startswith("automodel-recipes-") else "component"


def _requirement_name(requirement: str) -> str:
    for stop in "<>=!~;[ (":
        requirement = requirement.split(stop, 1)[0]
    return requirement.strip().lower().replace("_", "-")


def discover(root: Path = ROOT) -> list[Package]:
    """Return every workspace member under ``root/packages`` and ``root/apps``, sorted by name."""
    found = []
    for pyproject in sorted([*root.glob("packages/*/pyproject.toml"), *root.glob("apps/*/pyproject.toml")]):
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        project = data["project"]
        tool = data["tool"]
        # uv_build names the module; a package built by another backend names it under [tool.automodel]
        module = tool.get("uv", {}).get("build-backend", {}).get("module-name") or tool["automodel"]["module-name"]
        deps = tuple(_requirement_name(r) for r in project.get("dependencies", []))
        found.append(Package(project["name"], module, pyproject.parent, _kind(pyproject.parent), deps))
    return sorted(found, key=lambda p: p.name)


def workspace_dependencies(package: Package, packages: list[Package]) -> list[Package]:
    """Return ``package`` and every workspace member it depends on, transitively."""
    by_name = {p.name: p for p in packages}
    result: dict[str, Package] = {}
    stack = [package]
    while stack:
        current = stack.pop()
        if current.name in result:
            continue
        result[current.name] = current
        stack.extend(by_name[d] for d in current.dependencies if d in by_name)
    return list(result.values())


def _section(name: str, lines: list[str]) -> str:
    return "\n".join([f"[importlinter:contract:{name}]", *lines, ""])


def _modules(key: str, modules: list[str]) -> list[str]:
    return [f"{key} =", *(f"    {m}" for m in modules)]


def contracts_ini(packages: list[Package]) -> str:
    """Return an import-linter INI config holding the contracts of docs/architecture.md section 2.

    - components are independent of each other;
    - recipe packages are independent of each other;
    - components import no recipe and no app;
    - nothing imports an app (the CLI); an app imports only the components it declares as
      dependencies (the CLI: automodel.config and automodel.examples); it reaches recipes and the
      tools of other components through entry points only.
    Contracts that would name fewer modules than they need are left out.
    """
    components = [p.module for p in packages if p.kind == "component"]
    recipes = [p.module for p in packages if p.kind == "recipe"]
    apps = [p.module for p in packages if p.kind == "app"]
    parts = ["[importlinter]", *_modules("root_packages", [p.module for p in packages]), ""]
    if len(components) > 1:
        parts.append(
            _section(
                "components",
                ["name = Components do not import each other", "type = independence", *_modules("modules", components)],
            )
        )
    if len(recipes) > 1:
        parts.append(
            _section(
                "recipes",
                [
                    "name = Recipe packages do not import each other",
                    "type = independence",
                    *_modules("modules", recipes),
                ],
            )
        )
    if components and recipes + apps:
        parts.append(
            _section(
                "components-below",
                [
                    "name = Components import no recipe and no app",
                    "type = forbidden",
                    *_modules("source_modules", components),
                    *_modules("forbidden_modules", recipes + apps),
                ],
            )
        )
    if apps and components + recipes:
        parts.append(
            _section(
                "apps-on-top",
                [
                    "name = Nothing imports an app",
                    "type = forbidden",
                    *_modules("source_modules", components + recipes),
                    *_modules("forbidden_modules", apps),
                ],
            )
        )
    for app in (p for p in packages if p.kind == "app"):
        declared = [p.module for p in packages if p.kind == "component" and p.name in app.dependencies]
        forbidden = [m for m in components if m not in declared] + recipes
        if forbidden:
            parts.append(
                _section(
                    f"apps-lazy-{app.name}",
                    [
                        f"name = {app.name} imports only the components it declares",
                        "type = forbidden",
                        *_modules("source_modules", [app.module]),
                        *_modules("forbidden_modules", forbidden),
                    ],
                )
            )
    return "\n".join(parts)


def source_dirs(packages: list[Package]) -> list[str]:
    """Return each package's ``src`` folder (for PYTHONPATH when checking contracts from source)."""
    return [str(p.path / "src") for p in packages]
