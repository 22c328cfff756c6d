"""``python -m automodel.cli.worker ROUTE -c cfg.yaml [--allow-target NAME]... [--trust-remote-code] [overrides]``.

This is what torchrun starts in each process: it runs one recipe process. The user's
permissions reach it on this command line (never through the config). A user error is
printed as one paragraph (or, under the ``automodel`` launcher, written to its error
directory) and exits 2.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from automodel.cli.errors import CliError, hide_secret_environment, is_user_error, report
from automodel.cli.launch import ERROR_DIR_ENV, run_in_process
from automodel.cli.routes import route_by_name


def _record(exc: BaseException) -> int:
    error_dir = os.environ.get(ERROR_DIR_ENV)
    if not error_dir:
        return report(exc)
    rank = os.environ.get("RANK", "0")
    Path(error_dir, f"rank{rank}.txt").write_text(hide_secret_environment(str(exc)), encoding="utf-8")
    return 2


def main(argv: list[str] | None = None) -> int:
    """Run the route named in ``argv[0]`` on the config and overrides that follow; return the exit status."""
    from automodel.config import load_config_from_argv

    args = sys.argv[1:] if argv is None else argv
    try:
        if not args or args[0].startswith("-"):
            raise CliError(
                "usage: python -m automodel.cli.worker COMMAND.DOMAIN -c cfg.yaml [--allow-target NAME]... "
                "[--trust-remote-code] [overrides]"
            )
        route = route_by_name(args[0])
        return run_in_process(route, load_config_from_argv(args[1:]))
    except Exception as exc:
        if is_user_error(exc):
            return _record(exc)
        raise


if __name__ == "__main__":
    sys.exit(main())
