"""The ``automodel`` command: routes from installed recipes, ``config`` tools, the local launcher."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from automodel.cli.errors import USER_ERROR_EXIT, CliError, is_user_error, print_error, report
from automodel.cli.job import Job, Launcher, split_launcher
from automodel.cli.launch import (
    LaunchOptions,
    check_options,
    inside_torchrun,
    run_in_process,
    run_torchrun,
    shell_join,
    torchrun_command,
    worker_command,
)
from automodel.cli.routes import Route, describe_installed, find_route, installed_routes, route_by_name, route_commands

PASS_OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}
RECIPE_KEY = "recipe"


def _is_config_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or Path(name).is_file()


class RouteGroup(TyperGroup):
    """Top-level group: built-in commands, one command per installed route word, and ``automodel cfg.yaml``."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *route_commands()]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        builtin = super().get_command(ctx, cmd_name)
        if builtin is not None:
            return builtin
        if cmd_name in route_commands():
            return _ROUTE_COMMAND
        if _is_config_path(cmd_name):
            return _FILE_COMMAND
        raise CliError(f"unknown command `{cmd_name}`; {describe_installed()}; see `automodel --help`")

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        super().format_commands(ctx, formatter)
        routes = installed_routes()
        if routes:
            with formatter.section("Installed routes (automodel COMMAND DOMAIN -c cfg.yaml)"):
                formatter.write_dl(
                    [(f"{r.command} {r.domain}", f"{r.value} ({r.package} {r.version})") for r in routes]
                )


app = typer.Typer(
    cls=RouteGroup,
    name="automodel",
    help="Fine-tune and pre-train Hugging Face models from one YAML file.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Check and print configs without running them.", no_args_is_help=True)
app.add_typer(config_app, name="config")

ConfigOption = typer.Option(None, "-c", "--config", help="The YAML config file.", show_default=False)


def _load(config: Path | None, overrides: list[str]) -> Any:
    from automodel.config import load_config

    if config is None:
        raise CliError("no config file given; pass -c path/to/config.yaml")
    return load_config(config, overrides)


@app.command("routes")
def routes_command() -> None:
    """List the installed recipe routes with the package and version that provide each."""
    from rich.console import Console
    from rich.table import Table

    routes = installed_routes()
    console = Console(highlight=False)
    if not routes:
        console.print(describe_installed())
        return
    table = Table("route", "runs", "package", "version", box=None, pad_edge=False)
    for r in routes:
        table.add_row(f"{r.command} {r.domain}", r.value, r.package, r.version)
    console.print(table)


@config_app.command("validate", context_settings=PASS_OVERRIDES)
def validate_command(ctx: typer.Context, config: Path | None = ConfigOption) -> None:
    """Check every _target_ imports and accepts its keywords, and every ${...} resolves; build nothing."""
    from automodel.config import validate

    cfg = _load(config, ctx.args)
    validate(cfg)
    typer.echo(f"{config}: OK")


@config_app.command("show", context_settings=PASS_OVERRIDES)
def show_command(
    ctx: typer.Context,
    config: Path | None = ConfigOption,
    resolve: bool = typer.Option(True, "--resolve/--no-resolve", help="Replace ${...} references by their values."),
) -> None:
    """Print the config with overrides applied, references resolved and secrets redacted."""
    typer.echo(_load(config, ctx.args).to_yaml(resolve=resolve, redact=True), nl=False)


def _launch(route: Route, config_path: Path, cfg: Any, overrides: list[str], options: LaunchOptions) -> int:
    check_options(options)
    launcher, section, cfg = split_launcher(cfg)
    if launcher != "local":
        job = Job(route, cfg, config_path, options, launcher, section)
        return remote_launcher(launcher)(job)
    path = str(config_path.resolve())
    distributed = options.multi_process() and not inside_torchrun()
    command = (
        torchrun_command(options, route, path, overrides) if distributed else worker_command(route, path, overrides)
    )
    if options.dry_run:
        typer.echo("# resolved config (secrets redacted)")
        typer.echo(cfg.to_yaml(resolve=True, redact=True), nl=False)
        typer.echo(f"# {route.command} {route.domain} -> {route.value} ({route.package} {route.version})")
        typer.echo(f"# command{' (runs in this process)' if not distributed else ''}")
        typer.echo(shell_join(command))
        return 0
    if not distributed:
        return run_in_process(route, cfg)
    code, worker_error = run_torchrun(command, options.nproc_per_node)
    if worker_error is not None:
        raise CliError(worker_error)
    return code


def remote_launcher(name: str) -> Launcher:
    """Return the launcher for a ``slurm:`` or ``k8s:`` section (imported only when used)."""
    if name == "slurm":
        from automodel.cli.slurm import launch_slurm

        return launch_slurm
    from automodel.cli.k8s import launch_k8s

    return launch_k8s


NprocOption = typer.Option(1, "--nproc-per-node", help="Processes per node; more than 1 runs torchrun.")
NnodesOption = typer.Option(None, "--nnodes", help="Number of nodes (or MIN:MAX), passed to torchrun.")
NodeRankOption = typer.Option(None, "--node-rank", help="This node's rank, passed to torchrun.")
MasterAddrOption = typer.Option(None, "--master-addr", help="Rendezvous host, passed to torchrun.")
MasterPortOption = typer.Option(None, "--master-port", help="Rendezvous port, passed to torchrun.")
RdzvOption = typer.Option(
    None, "--rdzv-endpoint", help="host:port of a c10d rendezvous for every node, passed to torchrun."
)
DryRunOption = typer.Option(False, "--dry-run", help="Print the resolved config and the command; run nothing.")

_route_app = typer.Typer(add_completion=False)


@_route_app.command(context_settings=PASS_OVERRIDES)
def run_route(
    ctx: typer.Context,
    domain: str | None = typer.Argument(
        None, help="What to train: llm, vlm, diffusion, retrieval, ...", show_default=False
    ),
    config: Path | None = ConfigOption,
    nproc_per_node: int = NprocOption,
    nnodes: str | None = NnodesOption,
    node_rank: int | None = NodeRankOption,
    master_addr: str | None = MasterAddrOption,
    master_port: int | None = MasterPortOption,
    rdzv_endpoint: str | None = RdzvOption,
    dry_run: bool = DryRunOption,
) -> int:
    """Run the recipe for COMMAND DOMAIN on a config; extra --section.key VALUE arguments override it."""
    route = find_route(ctx.info_name or "", domain)
    if config is None:
        raise CliError(f"no config file given; run automodel {route.command} {route.domain} -c path/to/config.yaml")
    options = LaunchOptions(nproc_per_node, nnodes, node_rank, master_addr, master_port, dry_run, rdzv_endpoint)
    return _launch(route, config, _load(config, ctx.args), list(ctx.args), options)


_file_app = typer.Typer(add_completion=False)


@_file_app.command(context_settings=PASS_OVERRIDES)
def run_file(
    ctx: typer.Context,
    nproc_per_node: int = NprocOption,
    nnodes: str | None = NnodesOption,
    node_rank: int | None = NodeRankOption,
    master_addr: str | None = MasterAddrOption,
    master_port: int | None = MasterPortOption,
    rdzv_endpoint: str | None = RdzvOption,
    dry_run: bool = DryRunOption,
) -> int:
    """Run the recipe named by the config's `recipe:` key (command.domain, e.g. finetune.llm)."""
    config = Path(ctx.info_name or "")
    cfg = _load(config, list(ctx.args))
    name = cfg.get(RECIPE_KEY)
    if not isinstance(name, str) or not name.strip():
        raise CliError(
            f"{config}: no `{RECIPE_KEY}:` key says which recipe to run; add e.g. `{RECIPE_KEY}: finetune.llm`, "
            "or run automodel <command> <domain> -c " + str(config)
        )
    options = LaunchOptions(nproc_per_node, nnodes, node_rank, master_addr, master_port, dry_run, rdzv_endpoint)
    return _launch(route_by_name(name.strip()), config, cfg, list(ctx.args), options)


_ROUTE_COMMAND = typer.main.get_command(_route_app)
_FILE_COMMAND = typer.main.get_command(_file_app)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``automodel`` command; returns the process exit status."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="automodel", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        return 130
    except typer.TyperException as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path if ctx is not None else 'automodel'} --help`)"
        print_error(exc.format_message().rstrip(".") + hint)
        return exc.exit_code
    except Exception as exc:
        if is_user_error(exc):
            return report(exc)
        raise
    return result if isinstance(result, int) and not isinstance(result, bool) else 0


def run() -> None:
    """Console-script wrapper: exit with ``main()``'s status."""
    sys.exit(main())


__all__ = ["USER_ERROR_EXIT", "app", "main", "run"]
