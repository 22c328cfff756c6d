"""A live progress bar on a terminal (loss, lr, tps, ETA), plain log lines elsewhere."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from tqdm import tqdm


class ProgressReporter:
    """Shows training progress on rank 0.

    Args:
        total_steps: optimizer steps in the run.
        initial_step: where a resumed run starts.
        enabled: False on ranks other than 0.
        bar: True for a tqdm bar, False for one line per logged step, None to choose a bar
            only when ``stream`` is a terminal.
        stream: where to write (default stderr).
    """

    def __init__(
        self,
        total_steps: int,
        initial_step: int = 0,
        enabled: bool = True,
        bar: bool | None = None,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.enabled = enabled
        use_bar = self.stream.isatty() if bar is None else bar
        self._bar = (
            tqdm(total=total_steps, initial=initial_step, file=self.stream, unit="step", dynamic_ncols=True)
            if enabled and use_bar
            else None
        )
        self.total_steps = total_steps

    def update(self, step: int, values: dict[str, Any]) -> None:
        """Report that ``step`` finished with ``values`` (loss, lr, tps, ...)."""
        if not self.enabled:
            return
        text = {k: _short(v) for k, v in values.items() if v is not None}
        if self._bar is not None:
            self._bar.set_postfix(text, refresh=False)
            self._bar.update(step - self._bar.n)
        else:
            fields = " ".join(f"{k}={v}" for k, v in text.items())
            print(f"step {step}/{self.total_steps} {fields}", file=self.stream, flush=True)

    def message(self, text: str) -> None:
        """Print a line without breaking the bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        """Close the bar."""
        if self._bar is not None:
            self._bar.close()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
