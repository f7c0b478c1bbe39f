"""Progress of a long stage: a bar redrawn on a terminal, periodic log lines otherwise."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger(__name__)

BAR_WIDTH = 24
REDRAW_SECONDS = 0.2
LOG_SECONDS = 15.0
CLEAR_LINE = "\r\x1b[K"


def format_duration(seconds: float) -> str:
    """3725 -> "1:02:05"."""
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"


class ProgressBar:
    """Counts `done` towards `total` (in `unit`, shown divided by `scale`) and reports it.

    On a terminal it redraws one line on `stream`: a bar, the count, the rate and the ETA,
    then `note()`. Anywhere else (a Snakemake log, a pipe) it logs that line every
    `log_seconds` instead, so a log file gets a line now and then, not a flood.
    """

    def __init__(
        self,
        label: str,
        total: float,
        unit: str = "",
        scale: float = 1.0,
        start: float = 0.0,
        note: Callable[[], str] | None = None,
        stream: TextIO | None = None,
        log_seconds: float = LOG_SECONDS,
    ):
        self.label = label
        self.total = total
        self.unit = unit
        self.scale = scale
        self.done = start
        self.note = note
        self.stream = stream or sys.stderr
        self.on_terminal = self.stream.isatty()
        self.log_seconds = log_seconds
        self._start_done = start
        self._started = time.perf_counter()
        self._last_report = self._started

    def update(self, amount: float = 1.0) -> None:
        """Add `amount` to the count; redraw or log when it is time to."""
        self.done += amount
        now = time.perf_counter()
        wait = REDRAW_SECONDS if self.on_terminal else self.log_seconds
        if now - self._last_report >= wait:
            self._last_report = now
            self._report()

    def line(self) -> str:
        """`label [bar] done/total unit rate unit/s ETA h:mm:ss note`."""
        elapsed = time.perf_counter() - self._started
        rate = (self.done - self._start_done) / elapsed if elapsed > 0 else 0.0
        fraction = min(1.0, self.done / self.total) if self.total else 1.0
        filled = round(fraction * BAR_WIDTH)
        eta = (self.total - self.done) / rate if rate > 0 else None
        parts = [
            self.label,
            "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "]",
            f"{self._number(self.done)}/{self._number(self.total)} {self.unit}".rstrip(),
            f"{self._number(rate)} {self.unit}/s".lstrip(),
            "ETA " + (format_duration(max(0.0, eta)) if eta is not None else "?"),
        ]
        if self.note is not None:
            parts.append(self.note())
        return " ".join(parts)

    def _number(self, value: float) -> str:
        scaled = value / self.scale
        return f"{scaled:,.0f}" if self.scale == 1 else f"{scaled:,.1f}"

    def _report(self) -> None:
        if self.on_terminal:
            self.stream.write(CLEAR_LINE + self.line())
            self.stream.flush()
        else:
            log.info("%s", self.line())

    def close(self) -> None:
        """Leave the final state on the terminal's line (a log line needs no closing)."""
        if self.on_terminal:
            self.stream.write(CLEAR_LINE + self.line() + "\n")
            self.stream.flush()

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()
