"""The commands of installed routes: ``automodel COMMAND`` lists its domains, ``automodel COMMAND DOMAIN`` runs one.

Both read the route from the words they are invoked as, so one group and one command serve every
route. Help and shell completion offer only the domains whose recipe package is installed.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup

from automodel.cli.routes import find_route, installed_routes
from automodel.cli.schema_help import route_config_help


class RouteCommand(TyperCommand):
    """``automodel COMMAND DOMAIN``: its help ends with the route's config, read from the recipe's schema."""

    def format_epilog(self, ctx: Any, formatter: Any) -> None:
        """Write the epilog, then the config sections and keys of the route being asked about."""
        super().format_epilog(ctx, formatter)
        heading, rows = route_config_help(find_route(ctx.parent.info_name or "", ctx.info_name))
        if not rows:
            formatter.write_paragraph()
            formatter.write_text(heading)
            return
        with formatter.section(heading):
            formatter.write_dl(rows)


class DomainGroup(TyperGroup):
    """``automodel COMMAND``: one subcommand, ``route_command``, under each installed domain of COMMAND."""

    def __init__(self, route_command: TyperCommand, **attrs: Any) -> None:
        super().__init__(rich_markup_mode=None, **attrs)
        self.route_command = route_command

    def list_commands(self, ctx: Any) -> list[str]:
        """The domains installed for the command word this group was invoked as."""
        return [r.domain for r in installed_routes() if r.command == ctx.info_name]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """The route command for an installed domain; a CliError naming the installed ones otherwise."""
        if cmd_name in self.list_commands(ctx):
            return self.route_command
        if not ctx.resilient_parsing:  # shell completion asks about partial words: no error there
            find_route(ctx.info_name or "", cmd_name)
        return None

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        """Refuse a missing domain (``automodel pretrain -c cfg.yaml``) with the installed domains; help passes."""
        first = args[0] if args else "-"
        if not ctx.resilient_parsing and first.startswith("-") and first not in ctx.help_option_names:
            find_route(ctx.info_name or "", None)
        return super().parse_args(ctx, args)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """List each installed domain with the recipe it runs and the package providing it."""
        routes = [r for r in installed_routes() if r.command == ctx.info_name]
        with formatter.section("Domains (installed recipe packages)"):
            formatter.write_dl([(r.domain, f"{r.value} ({r.package} {r.version})") for r in routes])
