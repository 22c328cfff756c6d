"""``python -m automodel.cli.torchrun [torchrun args]``: torch.distributed.run without its failure traceback.

torchrun reports a failed worker by raising ChildFailedError, which prints a Python
traceback. This wrapper runs the same launcher and exits with the failed worker's own
exit status instead, so a user error in a worker still ends as one paragraph and exit 2.
"""

from __future__ import annotations

import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Run torch.distributed.run with ``argv``; return 0 or the first failed worker's exit status."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser, run

    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    args = get_args_parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        run(args)
    except ChildFailedError as exc:
        codes = [failure.exitcode for _, failure in sorted(exc.failures.items())]
        failed = [code if code > 0 else 128 - code for code in codes if code != 0]
        return failed[0] if failed else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
