"""What the Store needs of a database, and the transactions it runs on one.

A backend gives a connection (`db`) that takes SQL with `?` placeholders and returns rows
readable by column name and by index (as sqlite3.Row), the three kinds of transaction
below, and a number that changes when another connection commits. `sqlite.py` and
`postgres.py` are the two backends; `open_backend` picks one by the location's form."""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

__all__ = ["Backend", "Mode", "Transaction", "open_backend", "is_postgres_url", "redacted"]

# "write": serialised with every other write transaction (SQLite's write lock; one
#   advisory lock on PostgreSQL), so a write sees the state every earlier write left.
# "read": a consistent snapshot for several queries, taking no lock.
# "rows": a write that takes only the rows it selects with `Backend.lock_rows`, skipping
#   those another transaction holds: how several coordinators lease at once. On SQLite it
#   is a "write".
Mode = Literal["write", "read", "rows"]

_POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: str | Path) -> bool:
    return str(location).startswith(_POSTGRES_SCHEMES)


def redacted(location: str | Path) -> str:
    """The location as messages may show it: a URL without its password (in the user part,
    which ends at the last '@' before the path, or as a `password=` parameter)."""
    text = str(location)
    if not is_postgres_url(text):
        return text
    scheme, rest = text.split("://", 1)
    authority, slash, tail = rest.partition("/")
    if "@" in authority:
        user, host = authority.rsplit("@", 1)
        if ":" in user:
            authority = f"{user.split(':', 1)[0]}:***@{host}"
    tail = re.sub(r"([?&]password=)[^&]*", r"\1***", tail)
    return f"{scheme}://{authority}{slash}{tail}"


class Backend(ABC):
    db: Any  # the connection: execute(sql, params), executemany, in_transaction
    location: str  # the file or URL, as error messages name it
    errors: tuple[type[BaseException], ...]  # the driver's own failures
    integrity_error: type[BaseException]  # a UNIQUE or foreign key refused a write
    # appended to the SELECTs of a "rows" transaction: where it is not empty, "rows"
    # transactions run beside each other (else they are writes like any other)
    lock_rows: str = ""

    @abstractmethod
    def begin(self, mode: Mode) -> None: ...

    @abstractmethod
    def commit(self) -> None: ...

    @abstractmethod
    def rollback(self) -> None: ...

    @abstractmethod
    def data_version(self) -> int:
        """Changes when another connection commits (it may change on our own commits)."""

    @abstractmethod
    def schema_version(self) -> int: ...

    @abstractmethod
    def set_schema_version(self, version: int) -> None: ...

    def stream(self, sql: str, params: Sequence[Any]) -> Iterator[Any]:
        """The rows of a query of any size, read as they are consumed, from one snapshot."""
        return iter(self.db.execute(sql, params))

    def ddl(self, statement: str) -> str:
        """A migration statement (SQLite's dialect) in this backend's."""
        return statement

    @abstractmethod
    def ready(self) -> None:
        """After the migrations: what the backend keeps beside the schema (PostgreSQL's
        job notifications)."""

    @abstractmethod
    def folder_beside(self, kind: str) -> Path | None:
        """A folder for the fleet's files of one kind beside the database (None: there is
        no beside), used when the fleet recorded no files folder."""

    @abstractmethod
    def close(self) -> None: ...

    def transaction(self, mode: Mode = "write") -> Transaction:
        return Transaction(self, mode)


class Transaction:
    """BEGIN ... COMMIT, or ROLLBACK on error (the connection is in autocommit). Inside an
    open transaction it does nothing, so store methods compose."""

    def __init__(self, backend: Backend, mode: Mode) -> None:
        self.backend, self.mode = backend, mode
        self.outermost = False

    def __enter__(self) -> None:
        if not self.backend.db.in_transaction:
            try:
                self.backend.begin(self.mode)
            except BaseException:  # e.g. the writers' lock not granted: never left open
                if self.backend.db.in_transaction:
                    self.backend.rollback()
                raise
            self.outermost = True

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.outermost:
            return
        if exc_type is not None:
            self.backend.rollback()
            return
        try:
            self.backend.commit()
        except self.backend.errors:
            if self.backend.db.in_transaction:  # never leave the shared connection mid-transaction
                self.backend.rollback()
            raise


def open_backend(location: str | Path) -> Backend:
    """A PostgreSQL database for a postgresql:// URL, else an SQLite file at that path.
    (Imported here: both backends import this module.)"""
    if is_postgres_url(location):
        from coordinator.state.postgres import PostgresBackend

        return PostgresBackend(str(location))
    from coordinator.state.sqlite import SqliteBackend

    return SqliteBackend(Path(location))
