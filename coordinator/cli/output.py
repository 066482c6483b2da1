"""Progress bars for the coordinator's long commands (tables, JSON and CSV: agent/output.py)."""

from __future__ import annotations

import sys
from collections.abc import Callable

import click


def progress_bar(label: str) -> Callable[[int, int], None]:
    """A progress callback (done, total) drawing a bar on stderr once the total is known."""
    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)
        if done == total:
            bar.__exit__(None, None, None)

    return update
