"""One overall progress display for a plan: tasks done / total, per stage.

In a terminal it is a tqdm bar (the per-stage counts in its postfix); when the output is
a file or a pipe it prints a plain line every ``interval`` seconds and at the end, so a
log shows progress as it happens instead of in one burst.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import TextIO


class PlanProgress:
    """``update(stage)`` once per finished task; ``close()`` at the end."""

    def __init__(self, totals: Mapping[str, int], *, file: TextIO | None = None,
                 interval: float = 30.0, tty: bool | None = None, enabled: bool = True):
        self.totals = {s: n for s, n in totals.items() if n}
        self.done = dict.fromkeys(self.totals, 0)
        self.file = file or sys.stderr
        self.interval = interval
        self.enabled = enabled
        self.start = self._last = time.monotonic()
        tty = self.file.isatty() if tty is None else tty
        self.bar = None
        if enabled and tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=sum(self.totals.values()), desc="plan", file=self.file,
                            unit="task", mininterval=0.5, dynamic_ncols=True)

    @property
    def n(self) -> int:
        return sum(self.done.values())

    def per_stage(self) -> str:
        return ", ".join(f"{s} {self.done[s]}/{n}" for s, n in self.totals.items())

    def line(self) -> str:
        elapsed = time.monotonic() - self.start
        return (f"[plan] {self.n}/{sum(self.totals.values())} tasks ({self.per_stage()}), "
                f"{elapsed / 60:.1f} min elapsed")

    def update(self, stage: str) -> None:
        self.done[stage] = self.done.get(stage, 0) + 1
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.set_postfix_str(self.per_stage(), refresh=False)
            self.bar.update(1)
        elif time.monotonic() - self._last >= self.interval:
            self._print()

    def _print(self) -> None:
        self._last = time.monotonic()
        print(self.line(), file=self.file, flush=True)

    def close(self) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.close()
        else:
            self._print()
