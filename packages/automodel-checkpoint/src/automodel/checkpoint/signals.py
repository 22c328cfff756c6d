"""Saving before a scheduler or the user ends the job: a flag set by SIGTERM/SIGUSR1/SIGINT that the loop checks
between steps."""

from __future__ import annotations

import signal
from collections.abc import Iterable
from types import FrameType
from typing import Any

from automodel.checkpoint.errors import CheckpointError

DEFAULT_SIGNALS = ("SIGTERM", "SIGUSR1", "SIGINT")


class SaveOnSignal:
    """Within ``with SaveOnSignal() as stop:``, the listed signals set ``stop.requested`` instead of ending the process.

    SLURM and Kubernetes send SIGTERM (or a configured SIGUSR1) some time before they kill
    a job, and Ctrl-C sends SIGINT. The training loop checks ``stop.requested`` at each step
    boundary, saves a checkpoint and exits 0, so the next run resumes from it. ``stop.signal``
    names the signal received. A second SIGINT while the first is pending raises
    KeyboardInterrupt, so a second Ctrl-C still interrupts at once (a step or a save in
    progress; the last complete checkpoint stays). The previous handlers are restored when
    the block ends. Must be entered in the main thread (Python delivers signals there).

    Args:
        signals: signal names (``"SIGTERM"``) or numbers to catch.
    """

    def __init__(self, signals: Iterable[str | int] = DEFAULT_SIGNALS) -> None:
        self.signals = [_to_signal(s) for s in signals]
        self.requested = False
        self.signal: str | None = None
        self._previous: dict[signal.Signals, Any] = {}

    def __enter__(self) -> SaveOnSignal:
        try:
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        except ValueError as exc:  # not the main thread
            self.__exit__()
            raise CheckpointError(
                f"SaveOnSignal cannot install its handlers ({exc}); enter it in the main thread"
            ) from None
        return self

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.requested:
            raise KeyboardInterrupt
        self.requested = True
        self.signal = signal.Signals(signum).name


def _to_signal(value: str | int) -> signal.Signals:
    try:
        return signal.Signals[value] if isinstance(value, str) else signal.Signals(value)
    except (KeyError, ValueError):
        raise CheckpointError(
            f"SaveOnSignal signals has {value!r}, which is not a signal on this system; use names such as "
            "SIGTERM or SIGUSR1"
        ) from None
