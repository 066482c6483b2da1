"""A throwaway PostgreSQL server for the tests.

Debian's postgresql package (`make postgres` installs it) gives the programs; the cluster is
initialised in a new temporary folder, listens only on a Unix socket there, runs without
fsync (nothing in it outlives the run), and is stopped and removed at the end. The server
refuses to run as root, so as root it runs as the package's `postgres` user."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["ThrowawayPostgres", "postgres_bin"]


def postgres_bin() -> Path | None:
    """The folder of initdb and pg_ctl (Debian keeps them per major version), or None."""
    on_path = shutil.which("initdb")
    if on_path and shutil.which("pg_ctl"):
        return Path(os.path.realpath(on_path)).parent
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


class ThrowawayPostgres:
    def __init__(self, fsync: bool = False) -> None:
        """Without `fsync` (the tests) nothing is flushed to disk; with it (benchmarks)
        commits are flushed in the background (synchronous_commit off), as SQLite's WAL
        with synchronous=NORMAL does."""
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (make postgres installs it)")
        self.bin = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="ofa-pg-"))
        self.data = self.folder / "data"
        self._as_user: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
            self._as_user = ["runuser", "-u", "postgres", "--"]
        self._names = itertools.count()
        self._run("initdb", "-D", self.data, "-U", "postgres", "-A", "trust", "--no-sync")
        durability = "-c synchronous_commit=off" if fsync else "-F"
        self._options = (
            f"-k {self.folder} -c listen_addresses='' {durability} -c max_connections=300"
        )
        self.start()

    def start(self) -> None:
        self._run(
            "pg_ctl", "-D", self.data, "-l", self.folder / "log", "-w", "start", "-o", self._options
        )  # fmt: skip

    def halt(self) -> None:
        """Stop the server, keeping its data (`start` brings it back): a restart, an outage."""
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.folder}"

    def new_database(self) -> str:
        """The URL of a new, empty database."""
        import psycopg

        name = f"fleet_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def server_pid(self) -> int:
        """The postmaster's process id (its backends are its children)."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def _run(self, program: str, *args: object) -> None:
        command = [*self._as_user, str(self.bin / program), *map(str, args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{program} failed: {done.stderr.strip() or done.stdout.strip()}")
