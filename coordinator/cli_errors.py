"""The command line's one error format. Every failure a user can cause or meet (bad input, a
damaged, read-only or full database, a missing or unwritable file) ends as one line on stderr,
`ofa-coord: error: <file or field>: <problem>`, and exit code 1; never a traceback. Usage
mistakes (an unknown option, a value of the wrong type) keep click's usage message and exit 2.

Commands raise plain domain errors (ValueError naming its field, NotFound, OSError, sqlite3
errors); `ErrorMapping` turns them into that line at the boundary, so no command needs its own
try/except. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sqlite3

import click

from coordinator.store import NotFound

__all__ = ["CommandError", "ErrorMapping", "DB_META", "one_line"]

PROG = "ofa-coord"
DB_META = "ofa.db"  # ctx.meta key: the --db path of the running command (set by its option)

# What to do about the SQLite errors a user meets, by SQLite's error name.
_SQLITE_HINTS = {
    "SQLITE_READONLY": "the file and its folder must be writable: SQLite keeps -wal and -shm "
                       "files beside it",
    "SQLITE_NOTADB": "is --db the file `ofa-coord serve` uses?",
    "SQLITE_CORRUPT": "restore it from a backup",
    "SQLITE_CANTOPEN": "is its folder there, readable and writable?",
    "SQLITE_IOERR": "is the disk full?",
}


class CommandError(click.ClickException):
    """A failure shown as the one error line."""

    def show(self, file=None) -> None:
        click.echo(f"{PROG}: error: {self.message}", err=True)


def one_line(text: str) -> str:
    """Messages stay one line, however many lines the underlying error had."""
    return " ".join(str(text).split())


def _about(subject: str | None, problem: str) -> str:
    if not subject or problem.startswith(str(subject)):
        return problem
    return f"{subject}: {problem}"


def _sqlite_problem(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", "") or ""
    hint = next((text for prefix, text in _SQLITE_HINTS.items() if name.startswith(prefix)), "")
    return f"{exc} ({hint})" if hint else str(exc)


def describe(exc: BaseException, db: str | None) -> str | None:
    """The error line for an exception a user can cause; None for a bug."""
    if isinstance(exc, sqlite3.Error):
        return _about(db or "database", _sqlite_problem(exc))
    if isinstance(exc, OSError):  # Forbidden included; the file the OS names comes first
        return _about(exc.filename, exc.strerror or str(exc))
    if isinstance(exc, RecursionError):
        return "input: nested too deeply to read"
    if isinstance(exc, (ValueError, NotFound)):  # domain errors name their field
        return str(exc)
    return None


class ErrorMapping(click.Group):
    """A click group that shows every error of its commands in the one format."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.Abort, click.UsageError, CommandError):
            raise
        except click.ClickException as exc:  # a command's own message, in the one format
            raise CommandError(one_line(exc.message)) from None
        except Exception as exc:
            message = describe(exc, ctx.meta.get(DB_META))
            if message is None:
                raise
            raise CommandError(one_line(message)) from None
