"""Finding recipes: the ``automodel.recipes`` entry-point group, read without importing them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from automodel.cli.errors import CliError

GROUP = "automodel.recipes"


@dataclass(frozen=True)
class Route:
    """One installed route: ``command.domain`` -> ``module:function`` from a package."""

    command: str
    domain: str
    value: str
    package: str
    version: str
    entry_point: EntryPoint

    @property
    def name(self) -> str:
        """``command.domain``, as the entry point is named."""
        return f"{self.command}.{self.domain}"

    @property
    def module(self) -> str:
        """The module holding the recipe's ``main``."""
        return self.value.split(":", 1)[0]


def installed_routes() -> list[Route]:
    """Return every route registered under the ``automodel.recipes`` entry-point group, sorted."""
    routes = {}
    for ep in entry_points(group=GROUP):
        command, dot, domain = ep.name.partition(".")
        if not dot or not command or not domain:
            continue
        dist = getattr(ep, "dist", None)
        package = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        routes.setdefault(ep.name, Route(command, domain, ep.value, package, version, ep))
    return sorted(routes.values(), key=lambda r: (r.command, r.domain))


def route_commands() -> list[str]:
    """Return the distinct command words of installed routes (``finetune``, ``kd``, ...)."""
    return sorted({r.command for r in installed_routes()})


def describe_installed() -> str:
    """Return a one-line list of installed routes for error messages."""
    routes = installed_routes()
    if not routes:
        return "no recipes are installed (install a recipe package such as automodel-recipes-llm)"
    return "installed routes: " + ", ".join(f"{r.command} {r.domain}" for r in routes)


def find_route(command: str, domain: str | None) -> Route:
    """Return the route for ``command domain``; CliError listing what is installed otherwise."""
    routes = installed_routes()
    for route in routes:
        if route.command == command and route.domain == domain:
            return route
    commands = {r.command for r in routes}
    if command in commands:
        domains = ", ".join(r.domain for r in routes if r.command == command)
        what = f"unknown domain `{domain}` for `{command}`" if domain else f"`{command}` needs a domain"
        raise CliError(f"{what}; `{command}` is installed for: {domains} (automodel {command} <domain> -c cfg.yaml)")
    raise CliError(f"unknown command `{command}`; {describe_installed()}; see `automodel routes`")


def route_by_name(name: str) -> Route:
    """Return the route named ``command.domain`` (``finetune.llm``); CliError otherwise."""
    command, _, domain = name.replace(" ", ".").partition(".")
    return find_route(command, domain or None)


def load_main(route: Route) -> Callable:
    """Import a route's ``main``; a missing dependency is a CliError naming the package."""
    try:
        return route.entry_point.load()
    except ModuleNotFoundError as exc:
        raise CliError(
            f"the recipe `{route.command} {route.domain}` (package {route.package} {route.version}) "
            f"cannot be imported: no module named `{exc.name}`; install it or reinstall {route.package}"
        ) from None
    except AttributeError as exc:
        raise CliError(
            f"the recipe `{route.command} {route.domain}` points at `{route.value}`, which fails: {exc}"
        ) from None
