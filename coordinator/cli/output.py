"""Progress on stderr for the coordinator's long commands (tables, JSON and CSV:
agent/output.py): stdout keeps only the command's result."""

from __future__ import annotations

import sys
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

LINE_EVERY_S = 5.0  # status lines, when stderr is not a terminal, at most this often
LIVE_EVERY_S = 0.2  # a live status line on a terminal, redrawn at most this often


class ProgressReport:
    """An OnProgress (coordinator/services/progress.py) that draws on stderr: a bar for each
    phase with a known total on a terminal; otherwise one status line (phase, done/total,
    detail, seconds since the command began), redrawn in place on a terminal and written
    at most every LINE_EVERY_S s elsewhere (CI logs, pipes), so that a short phase shows
    only its last line. A phase without counts (total None, done 0: one long call) is said
    every LINE_EVERY_S s while it lasts, so that one that ends sooner says nothing."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.every_s = LIVE_EVERY_S if self.live else LINE_EVERY_S
        self.started = time.monotonic()
        self.phase: str | None = None
        self.bar: ProgressBar[str] | None = None
        self.timer: threading.Timer | None = None
        self.last_line = 0.0
        self.drawn = False  # a live line is on the terminal, to be ended with a newline

    def __call__(self, phase: str, done: int, total: int | None, detail: str = "") -> None:
        now = time.monotonic()
        if phase != self.phase:
            self.close()
            self.phase, self.last_line = phase, now
            if self.live and total:
                self.bar = click.progressbar(
                    length=total, label=phase, file=sys.stderr, item_show_func=lambda d: d
                )
                self.bar.__enter__()
            elif total is None and not done:
                self._say_while_running(phase)
        finished = total is not None and done >= total
        if self.bar is not None:
            self.bar.update(done - self.bar.pos, detail)
        elif finished or (done and now - self.last_line >= self.every_s):
            counted = f": {done}/{total}" if total is not None else f": {done}"
            self._line(phase + counted + (f" ({detail})" if detail else ""))
            self.last_line = now
        if finished:
            self.close()

    def _say_while_running(self, phase: str) -> None:
        """The phase's line every LINE_EVERY_S s (on a terminal: each second) until it ends."""

        def tick() -> None:
            if self.phase == phase:
                self._line(phase)
                self._say_while_running(phase)

        self.timer = threading.Timer(1.0 if self.live else LINE_EVERY_S, tick)
        self.timer.daemon = True
        self.timer.start()

    def say(self, line: str) -> None:
        """A line of the command's own log (training steps, say), with the time taken."""
        self.close()
        click.echo(line + self._elapsed(), err=True)

    def _line(self, line: str) -> None:
        line += self._elapsed()
        self.drawn = self.live
        click.echo("\r" + line + "\x1b[K" if self.live else line, nl=not self.live, err=True)

    def _elapsed(self) -> str:
        return f", {time.monotonic() - self.started:.0f} s"

    def __enter__(self) -> ProgressReport:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """End the phase's bar, live line or timer."""
        if self.timer is not None:
            self.timer.cancel()
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
        elif self.drawn:
            click.echo(err=True)
        self.bar, self.phase, self.timer, self.drawn = None, None, None, False
