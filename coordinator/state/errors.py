"""What the fleet state raises. Callers outside `coordinator/state` catch these and
`STORAGE_ERRORS`, never a database driver's own exception types."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg


class NotFound(LookupError):
    """A lease, job, blob, campaign or token that the store does not know."""


class UnknownAgent(NotFound):
    """An agent id that is not (or no longer) registered: the agent must register again."""


class UnknownLease(NotFound):
    """A report for a lease the store never issued (or issued for another job)."""


class Forbidden(PermissionError):
    """A caller acting for an agent or lease that is not its own."""


class NotAFleetDatabase(sqlite3.DatabaseError):
    """The file is empty, not SQLite, SQLite without our schema, or of a newer schema (or
    the PostgreSQL database holds other tables, or ours of a newer schema)."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: not a fleet database ({reason})")


# The backends' own errors: the database failed (locked, full, read-only, damaged,
# unreachable).
STORAGE_ERRORS: tuple[type[BaseException], ...] = (sqlite3.Error, psycopg.Error)

# Failures that pass (another process holding the write lock, a disk the operator can
# free; PostgreSQL's serialisation failures, deadlocks, lock waits, lost connections and
# restarts, by SQLSTATE): a caller may retry. Any other (read-only, I/O error, damage)
# needs the operator.
_TRANSIENT = (
    "SQLITE_BUSY",
    "SQLITE_LOCKED",
    "SQLITE_FULL",
    "40001",
    "40P01",
    "55P03",
    "08",
    "57P",
    "53300",
)

# What to do about the failures a user meets, by the backend's error name.
_HINTS = {
    "SQLITE_READONLY": "the file and its folder must be writable: SQLite keeps -wal and -shm "
    "files beside it",
    "SQLITE_NOTADB": "is --db the file `ofa-coord serve` uses?",
    "SQLITE_CORRUPT": "restore it from a backup",
    "SQLITE_CANTOPEN": "is its folder there, readable and writable?",
    "SQLITE_IOERR": "is the disk full?",
}


def storage_error_name(exc: BaseException) -> str:
    """The backend's name of the failure (e.g. SQLITE_BUSY, or PostgreSQL's SQLSTATE such
    as 40P01), or ''."""
    return getattr(exc, "sqlite_errorname", "") or getattr(exc, "sqlstate", "") or ""


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may succeed. PostgreSQL's connection failures met by the driver
    itself (refused while the server restarts, reset, cut) carry no SQLSTATE."""
    if isinstance(exc, psycopg.OperationalError) and not storage_error_name(exc):
        return True
    return storage_error_name(exc).startswith(_TRANSIENT)


def storage_problem(exc: BaseException) -> str:
    """The failure in words, with what to do about it where we know."""
    name = storage_error_name(exc)
    hint = next((text for prefix, text in _HINTS.items() if name.startswith(prefix)), "")
    return f"{exc} ({hint})" if hint else str(exc)
