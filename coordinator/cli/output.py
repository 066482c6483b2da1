"""Progress on stderr for the coordinator's long commands (tables, JSON and CSV:
agent/output.py): stdout keeps only the command's result."""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

LINE_EVERY_S = 5.0  # status lines, when stderr is not a terminal, at most this often


class ProgressReport:
    """An OnProgress (coordinator/services/progress.py) that draws on stderr: a bar for each
    phase with a known total on a terminal, otherwise one status line (phase, done/total,
    detail, elapsed) kept up to date on a terminal and written at most every LINE_EVERY_S
    s elsewhere (CI logs, pipes), plus the phase's last line."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.phase: str | None = None
        self.bar: ProgressBar[str] | None = None
        self.started = self.last_line = 0.0

    def __call__(self, phase: str, done: int, total: int | None, detail: str = "") -> None:
        now = time.monotonic()
        if phase != self.phase:
            self.close()
            self.phase, self.started, self.last_line = phase, now, -float("inf")
            if self.live and total:
                self.bar = click.progressbar(
                    length=total, label=phase, file=sys.stderr, item_show_func=lambda d: d
                )
                self.bar.__enter__()
        finished = total is not None and done >= total
        if self.bar is not None:
            self.bar.update(done - self.bar.pos, detail)
        elif finished or self.live or now - self.last_line >= LINE_EVERY_S:
            line = f"{phase}: {done}" + (f"/{total}" if total is not None else "")
            line += (f" ({detail})" if detail else "") + f", {now - self.started:.0f} s"
            click.echo(("\r" if self.live else "") + line, nl=not self.live, err=True)
            self.last_line = now
        if finished:
            self.close()

    def __enter__(self) -> ProgressReport:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """End the phase's bar or live line (a command that fails midway leaves it as is)."""
        if self.bar is not None:
            self.bar.__exit__(None, None, None)
        elif self.live and self.phase is not None:
            click.echo(err=True)
        self.bar, self.phase = None, None
