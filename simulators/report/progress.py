"""The drill's progress line on stderr, drawn from its timeline as it fills."""

from __future__ import annotations

import sys

from simulators.report.timeline import Kind, Timeline


class Progress:
    """One line on stderr, redrawn: ``[#####-----] 52% 3.1/6.0 h · 4 warnings · 37 notified``."""

    def __init__(self, enabled: bool, total_s: float) -> None:
        self.enabled, self.total_s = enabled, total_s
        self.tty = sys.stderr.isatty()
        self._last = -1

    def show(self, t: float, tl: Timeline, done: bool = False) -> None:
        if not self.enabled:
            return
        frac = max(0.0, min(1.0, t / self.total_s))
        pct = int(frac * 100)
        if not self.tty and not done and pct // 10 == self._last // 10:
            return  # a log file gets a line per 10 %, a terminal a live bar
        self._last = pct
        bar = "#" * int(frac * 30) + "-" * (30 - int(frac * 30))
        warnings = sum(1 for e in tl.events if e.kind is Kind.WARNING)
        told = sum(1 for r in tl.recipients.values() if r.first_told_t is not None)
        line = (f"drill [{bar}] {pct:3d}% {t / 3600:5.1f}/{self.total_s / 3600:.1f} h · {warnings} warnings · "
                f"{told} notified")
        print(("\r" + line) if self.tty else line, end="\n" if (done or not self.tty) else "", file=sys.stderr,
              flush=True)
