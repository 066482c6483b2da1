"""The SQLite backend: one file (blobs beside it), the default and the embedded choice.

The file uses WAL so that CLI processes can read (and enqueue) while the server runs; every
write transaction takes SQLite's one write lock (BEGIN IMMEDIATE), so writes are serial."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from coordinator.state.backend import Backend, Mode
from coordinator.state.errors import NotAFleetDatabase
from coordinator.state.schema import FLEET_TABLES, SCHEMA_VERSION

__all__ = ["SqliteBackend"]

_HEADER = b"SQLite format 3\x00"
_BEGIN = {"write": "BEGIN IMMEDIATE", "rows": "BEGIN IMMEDIATE", "read": "BEGIN DEFERRED"}


class SqliteBackend(Backend):
    errors = (sqlite3.Error,)
    integrity_error = sqlite3.IntegrityError

    def __init__(self, path: Path) -> None:
        """Open (or create, when missing) a fleet database. Any other file that is not one
        raises NotAFleetDatabase before anything is written to it."""
        self.path = path
        self.location = str(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists():
            _check_header(path)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10.0)
        try:
            self.db.row_factory = sqlite3.Row
            _check_schema(self.db, path)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=10000")
            self.db.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            self.db.close()
            raise

    def begin(self, mode: Mode) -> None:
        self.db.execute(_BEGIN[mode])

    def commit(self) -> None:
        self.db.execute("COMMIT")

    def rollback(self) -> None:
        self.db.execute("ROLLBACK")

    def data_version(self) -> int:
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def set_schema_version(self, version: int) -> None:
        self.db.execute(f"PRAGMA user_version={int(version)}")

    def ready(self) -> None:
        """Nothing beside the schema: `data_version` is SQLite's own."""

    def folder_beside(self, kind: str) -> Path:
        return self.path.with_name(f"{self.path.name}.{kind}")

    def close(self) -> None:
        self.db.close()


def _check_header(path: Path) -> None:
    """An existing file must start as an SQLite database does: SQLite itself takes a file
    shorter than its header for a new, empty database and would write ours into it."""
    with path.open("rb") as f:
        head = f.read(len(_HEADER))
    if not head:
        raise NotAFleetDatabase(path, "the file is empty")
    if head != _HEADER:
        raise NotAFleetDatabase(path, "file is not a database (no SQLite header)")


def _check_schema(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a file that is not ours (an empty one is new), or of a newer schema."""
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as exc:  # "file is not a database", or damaged
        raise NotAFleetDatabase(path, str(exc)) from None
    if version > SCHEMA_VERSION:
        raise NotAFleetDatabase(
            path,
            f"schema version {version} is newer than this "
            f"coordinator's ({SCHEMA_VERSION}); upgrade ofa-fleet",
        )
    if (tables or version) and not (version and FLEET_TABLES <= tables):
        raise NotAFleetDatabase(path, "an SQLite file without the fleet's tables")
