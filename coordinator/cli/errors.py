"""The command line's one error format. Every failure a user can cause or meet (bad input, a
damaged, read-only or full database, a missing or unwritable file) ends as one line on stderr,
`ofa-coord: error: <file or field>: <problem>`, and exit code 1; never a traceback. Usage
mistakes (an unknown option, a value of the wrong type) keep click's usage message and exit 2.

Commands raise plain domain errors (ValueError naming its field, NotFound, OSError, the state's
storage errors); `ErrorMapping` turns them into that line at the boundary, so no command needs
its own try/except. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import click

from coordinator.state import STORAGE_ERRORS, NotFound, storage_problem

__all__ = ["CommandError", "ErrorMapping", "DB_META", "one_line"]

PROG = "ofa-coord"
DB_META = "ofa.db"  # ctx.meta key: the --db path of the running command (set by its option)


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


def describe(exc: BaseException, db: str | None) -> str | None:
    """The error line for an exception a user can cause; None for a bug."""
    if isinstance(exc, STORAGE_ERRORS):
        return _about(db or "database", storage_problem(exc))
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
