"""The ``automodel`` command: routes from installed recipes, ``config`` tools, the local launcher."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from automodel.cli.errors import USER_ERROR_EXIT, CliError, is_user_error, print_error, report
from automodel.cli.examples_command import example_app
from automodel.cli.job import Job, Launcher, split_launcher
from automodel.cli.launch import (
    LaunchOptions,
    check_options,
    inside_torchrun,
    permission_args,
    run_in_process,
    run_torchrun,
    shell_join,
    torchrun_command,
    worker_command,
)
from automodel.cli.plot import plot_command
from automodel.cli.push import push_command
from automodel.cli.route_group import DomainGroup, RouteCommand
from automodel.cli.routes import Route, describe_installed, find_route, installed_routes, route_by_name, route_commands
from automodel.cli.tools import offered
from automodel.cli.versions import show_versions

PASS_OVERRIDES = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": ["-h", "--help"]}
RECIPE_KEY = "recipe"
RUN_READERS = ("generate",)  # routes that read a training run's config rather than their own


def _is_config_path(name: str) -> bool:
    return name.endswith((".yaml", ".yml")) or Path(name).is_file()


class RouteGroup(TyperGroup):
    """Top-level group: built-in commands, one command per installed route word, and ``automodel cfg.yaml``."""

    def list_commands(self, ctx: Any) -> list[str]:
        """Built-in commands (those needing a tool only when it is installed), then installed route words."""
        return [*filter(offered, super().list_commands(ctx)), *route_commands()]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        """A built-in command, an installed route word's group, ``automodel cfg.yaml``, or a CliError."""
        builtin = super().get_command(ctx, cmd_name)
        if builtin is not None:
            return builtin
        if cmd_name in route_commands():
            return _DOMAIN_GROUP
        if _is_config_path(cmd_name):
            return _FILE_COMMAND
        if ctx.resilient_parsing:  # shell completion asks about partial words: no error there
            return None
        raise CliError(f"unknown command `{cmd_name}`; {describe_installed()}; see `automodel --help`")

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """List the commands, then every installed route with the recipe and package behind it."""
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
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
config_app = typer.Typer(help="Check and print configs without running them.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.command("plot")(plot_command)
app.command("push")(push_command)
app.add_typer(example_app, name="example")


VersionOption = typer.Option(
    False,
    "--version",
    is_eager=True,
    callback=show_versions,
    help="Print the name and version of every installed automodel package, then exit.",
)


@app.callback()
def top_level_options(version: bool = VersionOption) -> None:
    """Fine-tune and pre-train Hugging Face models from one YAML file."""


ConfigOption = typer.Option(None, "-c", "--config", help="The YAML config file.", show_default=False)
AllowTargetOption = typer.Option(
    None,
    "--allow-target",
    help="Let _target_ call this module prefix or exact callable (repeatable; os.path.join, mypkg). "
    "Only an exact callable lifts the denylist (--allow-target torch.load). A config file cannot allow anything.",
    show_default=False,
)
TrustRemoteCodeOption = typer.Option(
    False,
    "--trust-remote-code",
    help="Let the config set trust_remote_code: true, which runs Python code shipped with the model.",
)


def _load(config: Path | None, overrides: list[str], allow_targets: list[str] | None, trust: bool) -> Any:
    from automodel.config import load_config

    if config is None:
        raise CliError("no config file given; pass -c path/to/config.yaml")
    return load_config(config, overrides, allow_targets=allow_targets or (), trust_remote_code=trust)


def allowances_header(allow_targets: list[str] | None) -> str:
    """Return YAML comment lines saying what ``_target_`` may call and where each allowance came from."""
    from automodel.config import target_allowances

    sources: dict[str, list[str]] = {}
    for name, source in target_allowances(allow_targets or ()):
        sources.setdefault(source, []).append(name)
    lines = ["# _target_ may call, by where the allowance came from:"]
    lines += [f"#   {source}: {', '.join(names)}" for source, names in sources.items()]
    lines.append(
        "# never (unless an allowance names that exact callable): loaders of untrusted data (torch.load, pickle, "
        "numpy.load, ...), native code loaders, os, subprocess, importlib, eval/exec"
    )
    return "\n".join(lines) + "\n"


def reader_overrides(
    route: Route, config: Path, args: list[str], allow_targets: list[str] | None, trust: bool
) -> list[str]:
    """Return ``args`` with ``--key VALUE`` made ``--+key VALUE`` for a top-level key the config lacks,
    when ``route`` reads a run (``RUN_READERS``): ``automodel generate llm -c run.yaml --prompt "..."``
    adds the reader's own keys to the run's config (its schema then checks them)."""
    if route.command not in RUN_READERS:
        return args
    present = set(_load(config, [], allow_targets, trust))
    rewritten = []
    for token in args:
        key = token[2:].partition("=")[0]
        if token.startswith("--") and key and not key.startswith(("+", "~")) and "." not in key and key not in present:
            token = "--+" + token[2:]
        rewritten.append(token)
    return rewritten


def check_recipe_key(cfg: Any, route: Route, config: Path) -> None:
    """Raise a ConfigError at the config's ``recipe:`` key when it names another route than the one run.

    A route of ``RUN_READERS`` (``generate``) reads the config of a run it did not train, so any
    route of its own domain is accepted there (``automodel generate llm -c tiny_sft.yaml``).
    """
    from automodel.config import config_error

    name = cfg.get(RECIPE_KEY)
    if not isinstance(name, str) or name.strip().replace(" ", ".") == route.name:
        return
    if route.command in RUN_READERS and name.strip().replace(" ", ".").endswith(f".{route.domain}"):
        return
    raise config_error(
        cfg,
        f"the config says it is for `{name.strip()}`, but the command runs `{route.command} {route.domain}`",
        RECIPE_KEY,
        f"run it with automodel {name.strip().replace('.', ' ', 1)} -c {config} (or automodel {config}), "
        f"or change `{RECIPE_KEY}:` if the config is meant for {route.command} {route.domain}",
    )


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
def validate_command(
    ctx: typer.Context,
    config: Path | None = ConfigOption,
    allow_target: list[str] | None = AllowTargetOption,
    trust_remote_code: bool = TrustRemoteCodeOption,
) -> None:
    """Check every _target_ is allowed, imports and accepts its keywords, and every ${...} resolves; build nothing."""
    from automodel.config import validate

    cfg = _load(config, ctx.args, allow_target, trust_remote_code)
    validate(cfg)
    typer.echo(f"{config}: OK")


@config_app.command("show", context_settings=PASS_OVERRIDES)
def show_command(
    ctx: typer.Context,
    config: Path | None = ConfigOption,
    resolve: bool = typer.Option(True, "--resolve/--no-resolve", help="Replace ${...} references by their values."),
    allow_target: list[str] | None = AllowTargetOption,
    trust_remote_code: bool = TrustRemoteCodeOption,
) -> None:
    """Print the config with overrides applied, references resolved and secrets redacted.

    A comment header says what ``_target_`` may call and where each allowance came from.
    """
    cfg = _load(config, ctx.args, allow_target, trust_remote_code)
    typer.echo(allowances_header(allow_target) + cfg.to_yaml(resolve=resolve, redact=True), nl=False)


def _local_command(
    route: Route, path: str, overrides: list[str], options: LaunchOptions, distributed: bool
) -> list[str]:
    if distributed:
        return torchrun_command(options, route, path, overrides)
    return worker_command(route, path, overrides, permission_args(options.allow_targets, options.trust_remote_code))


def _launch(route: Route, config_path: Path, cfg: Any, overrides: list[str], options: LaunchOptions) -> int:
    from automodel.config import redact_override_args

    check_options(options)
    launcher, section, cfg = split_launcher(cfg)
    if launcher != "local":
        job = Job(route, cfg, config_path, options, launcher, section)
        return remote_launcher(launcher)(job)
    path = str(config_path.resolve())
    distributed = options.multi_process() and not inside_torchrun()
    if options.dry_run:
        shown = _local_command(route, path, redact_override_args(overrides), options, distributed)
        typer.echo("# resolved config (secrets redacted)")
        typer.echo(cfg.to_yaml(resolve=True, redact=True), nl=False)
        typer.echo(f"# {route.command} {route.domain} -> {route.value} ({route.package} {route.version})")
        typer.echo(f"# command{' (runs in this process)' if not distributed else ''}")
        typer.echo(shell_join(shown))
        return 0
    if not distributed:
        return run_in_process(route, cfg)
    code, worker_error = run_torchrun(torchrun_command(options, route, path, overrides), options.nproc_per_node)
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

_route_app = typer.Typer(add_completion=False, rich_markup_mode=None)


@_route_app.command(cls=RouteCommand, context_settings=PASS_OVERRIDES)
def run_route(
    ctx: typer.Context,
    config: Path | None = ConfigOption,
    nproc_per_node: int = NprocOption,
    nnodes: str | None = NnodesOption,
    node_rank: int | None = NodeRankOption,
    master_addr: str | None = MasterAddrOption,
    master_port: int | None = MasterPortOption,
    rdzv_endpoint: str | None = RdzvOption,
    dry_run: bool = DryRunOption,
    allow_target: list[str] | None = AllowTargetOption,
    trust_remote_code: bool = TrustRemoteCodeOption,
) -> int:
    """Run the recipe for COMMAND DOMAIN on a config; extra --section.key VALUE arguments override it."""
    route = find_route(ctx.parent.info_name if ctx.parent else "", ctx.info_name)
    if config is None:
        raise CliError(f"no config file given; run automodel {route.command} {route.domain} -c path/to/config.yaml")
    options = LaunchOptions(
        nproc_per_node,
        nnodes,
        node_rank,
        master_addr,
        master_port,
        dry_run,
        rdzv_endpoint,
        tuple(allow_target or ()),
        trust_remote_code,
    )
    args = reader_overrides(route, config, list(ctx.args), allow_target, trust_remote_code)
    cfg = _load(config, args, allow_target, trust_remote_code)
    check_recipe_key(cfg, route, config)
    return _launch(route, config, cfg, args, options)


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
    allow_target: list[str] | None = AllowTargetOption,
    trust_remote_code: bool = TrustRemoteCodeOption,
) -> int:
    """Run the recipe named by the config's `recipe:` key (command.domain, e.g. finetune.llm)."""
    config = Path(ctx.info_name or "")
    cfg = _load(config, list(ctx.args), allow_target, trust_remote_code)
    name = cfg.get(RECIPE_KEY)
    if not isinstance(name, str) or not name.strip():
        raise CliError(
            f"{config}: no `{RECIPE_KEY}:` key says which recipe to run; add e.g. `{RECIPE_KEY}: finetune.llm`, "
            "or run automodel <command> <domain> -c " + str(config)
        )
    options = LaunchOptions(
        nproc_per_node,
        nnodes,
        node_rank,
        master_addr,
        master_port,
        dry_run,
        rdzv_endpoint,
        tuple(allow_target or ()),
        trust_remote_code,
    )
    return _launch(route_by_name(name.strip()), config, cfg, list(ctx.args), options)


_ROUTE_COMMAND = typer.main.get_command(_route_app)
_DOMAIN_GROUP = DomainGroup(
    _ROUTE_COMMAND,
    help="Run an installed recipe: automodel COMMAND DOMAIN -c cfg.yaml (DOMAIN: see below).",
    subcommand_metavar="DOMAIN [OPTIONS] [--KEY VALUE]...",
    context_settings={"help_option_names": ["-h", "--help"]},
)
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
