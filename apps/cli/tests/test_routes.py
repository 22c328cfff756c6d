"""Routes come from the `automodel.recipes` entry points of installed packages."""

from __future__ import annotations

import subprocess
import sys

from automodel.cli.routes import find_route, installed_routes


def test_installed_routes_come_from_the_test_package_entry_points():
    routes = {r.name: r for r in installed_routes()}
    assert routes["finetune.toy"].value == "automodel_test_routes.toy:main"
    assert routes["finetune.toy"].package == "automodel-test-routes"
    assert routes["finetune.toy"].version == "0.0.1"
    assert {"finetune.toy", "pretrain.toy", "finetune.broken"} <= set(routes)


def test_find_route_matches_command_and_domain():
    route = find_route("pretrain", "toy")
    assert (route.command, route.domain, route.module) == ("pretrain", "toy", "automodel_test_routes.toy")


def test_routes_command_lists_route_package_and_version(automodel):
    result = automodel("routes")
    assert result.returncode == 0, result.stderr
    line = next(line for line in result.stdout.splitlines() if line.startswith("finetune toy"))
    assert "automodel_test_routes.toy:main" in line
    assert "automodel-test-routes" in line
    assert "0.0.1" in line


def test_help_lists_builtin_commands_and_installed_routes(automodel):
    result = automodel("--help")
    assert result.returncode == 0, result.stderr
    for word in ("routes", "config", "finetune", "pretrain toy"):
        assert word in result.stdout


def test_help_routes_and_config_show_import_no_torch(write_config):
    cfg = write_config({"optimizer": {"_target_": "torch.optim.AdamW", "lr": 1e-4}})
    code = (
        "import sys\n"
        "from automodel.cli.app import main\n"
        f"assert main(['--help']) == 0\n"
        f"assert main(['routes']) == 0\n"
        f"assert main(['config', 'show', '-c', {str(cfg)!r}]) == 0\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "torch.optim.AdamW" in result.stdout
