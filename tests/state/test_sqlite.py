"""What only the SQLite backend has: its file (schema version, WAL, migrations of an old
file, refusing files that are not fleet databases), two processes sharing it, and how
tokens and samples are stored in it."""

from __future__ import annotations

import hashlib
import sqlite3

import numpy as np
import pytest

from coordinator.state import SCHEMA_VERSION, NotAFleetDatabase, Store, hash_token, schema
from tests.state.helpers import add_agent, enqueue, lease, ok


@pytest.fixture
def store(tmp_path):
    """This module's tests are about SQLite: never another backend."""
    s = Store(tmp_path / "fleet.db")
    yield s
    s.close()


def test_new_file_gets_current_schema_version(tmp_path):
    """A fresh file is migrated to SCHEMA_VERSION, in WAL mode."""
    path = tmp_path / "sub" / "fleet.db"
    s = Store(path)
    try:
        assert s.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in s.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"tokens", "agents", "jobs", "leases", "results", "blobs"} <= tables
    finally:
        s.close()


def test_reopening_is_a_no_op(tmp_path):
    """Reopening keeps the schema and the data."""
    path = tmp_path / "fleet.db"
    s = Store(path)
    secret = s.create_token("keep")
    schema = s.db.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall()
    s.close()
    s = Store(path)
    try:
        assert s.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert s.db.execute("SELECT sql FROM sqlite_master ORDER BY name").fetchall() == schema
        assert s.token_by_secret(secret).name == "keep"
    finally:
        s.close()


def test_newer_schema_is_refused(tmp_path):
    """A file written by a newer coordinator is refused, not downgraded."""
    path = tmp_path / "fleet.db"
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(
        NotAFleetDatabase,
        match=r"fleet.db: not a fleet database.*"
        r"schema version \d+ is newer.*upgrade",
    ):
        Store(path)
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1
    raw.close()


def test_two_stores_on_one_file(tmp_path, digest):
    """Server and CLI processes share the file: each sees the other's commits."""
    server = Store(tmp_path / "fleet.db")  # same file as the `digest` fixture's store
    cli = Store(tmp_path / "fleet.db")
    try:
        add_agent(server)
        before = server.data_version()
        ids = enqueue(cli, digest, 2)
        assert server.data_version() != before
        assert [j.job_id for j in lease(server, max_jobs=5)] == ids
        assert cli.job(ids[0])["state"] == "leased"
        assert cli.list_agents()[0]["id"] == "a1"
    finally:
        server.close()
        cli.close()


def test_a_token_is_stored_only_as_its_hash(store):
    """Only the sha256 of the secret is anywhere in the database."""
    secret = store.create_token("edge-1")
    dump = "\n".join(store.db.iterdump())
    assert secret not in dump
    assert secret[4:] not in dump
    assert hash_token(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert store.db.execute("SELECT hash FROM tokens").fetchall()[0][0] == hash_token(secret)


def test_samples_are_stored_as_int64_little_endian(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    held = lease(store)[0]
    samples = [1, 0, 2**62 + 7, 123_456_789_012, 999_999_999_999_999_999, 3]
    store.report("a1", job_id, held.lease_id, "ok", ok(samples))
    raw = store.db.execute("SELECT samples FROM results").fetchone()[0]
    assert raw == np.asarray(samples, dtype="<i8").tobytes()  # int64 little-endian


def test_a_file_that_is_not_a_fleet_database_is_refused_untouched(tmp_path):
    """Empty, text, foreign SQLite: NotAFleetDatabase naming the path and the reason, and
    the file is left exactly as it was."""
    foreign = tmp_path / "other.db"
    raw = sqlite3.connect(foreign)
    raw.execute("CREATE TABLE photos (id INTEGER)")
    raw.close()
    cases = {
        tmp_path / "empty.db": (b"", "empty"),
        tmp_path / "notes.db": (b"hello, not sqlite\n" * 100, "not a database"),
        foreign: (foreign.read_bytes(), "without the fleet's tables"),
    }
    for path, (content, reason) in cases.items():
        path.write_bytes(content)
        with pytest.raises(
            NotAFleetDatabase, match=rf"{path.name}: not a fleet database.*{reason}"
        ):
            Store(path)
        assert path.read_bytes() == content
        assert isinstance(NotAFleetDatabase(path, reason), sqlite3.DatabaseError)


def test_a_blob_write_that_fails_leaves_no_file(tmp_path):
    """A write cut short by the file-size limit (as a full disk would) raises, and leaves
    neither a temp file nor an unlisted blob. Run in a child process: RLIMIT_FSIZE is
    per-process and must not reach pytest."""
    import subprocess
    import sys
    import textwrap

    db = tmp_path / "fleet.db"
    Store(db).close()
    code = textwrap.dedent(f"""
        import errno, resource, signal
        from coordinator.state import BlobStore
        from coordinator.state import Store
        store = Store({str(db)!r})
        blobs = BlobStore(store)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (2**20, 2**20))
        try:
            blobs.put(b"x" * 3 * 2**20)
        except OSError as exc:
            print("refused", errno.errorcode[exc.errno])
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "refused EFBIG", out.stderr
    assert [p for p in (tmp_path / "fleet.db.blobs").rglob("*") if p.is_file()] == []
    s = Store(db)
    assert s.db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 0
    s.close()


def database_at_version(path, version, monkeypatch):
    """A fleet database as a coordinator of schema `version` made it."""
    with monkeypatch.context() as patch:
        patch.setattr(schema, "SCHEMA_VERSION", version)
        Store(path).close()
    raw = sqlite3.connect(path, isolation_level=None)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == version
    raw.execute("INSERT INTO blobs VALUES ('d1', 1, 0)")  # the model its jobs refer to
    return raw


def test_migration_4_closes_campaigns_that_finished_before(tmp_path, monkeypatch):
    """Before version 4 a campaign became done only when its status was read: opening such
    a database marks the finished ones done, and leaves the others running."""
    path = tmp_path / "old.db"
    raw = database_at_version(path, 3, monkeypatch)
    for name, finished in (("finished", True), ("unfinished", False)):
        raw.execute(
            "INSERT INTO campaigns(id, name, spec, state, created_at) VALUES "
            "(?, ?, '{}', 'running', 0)",
            (name, name),
        )
        raw.execute(
            "INSERT INTO jobs(id, target_label, spec, model_digest, state, max_attempts, seq, "
            "campaign, created_at, finished_at) VALUES (?, 'cpu', x'00', 'd1', ?, 3, 1, ?, 0, ?)",
            (f"j-{name}", "done" if finished else "queued", name, 5 if finished else None),
        )
    raw.close()
    store = Store(path)
    states = dict(store.db.execute("SELECT id, state FROM campaigns").fetchall())
    assert states == {"finished": "done", "unfinished": "running"}
    finished_at = store.db.execute("SELECT finished_at FROM campaigns WHERE id='finished'")
    assert finished_at.fetchone()[0] == 5
    store.close()


def test_migration_5_keeps_old_jobs_leasable(tmp_path, monkeypatch):
    """Jobs queued before disturbed re-measures existed are leasable at once, with the
    default bound on disturbed results."""
    path = tmp_path / "old.db"
    raw = database_at_version(path, 4, monkeypatch)
    raw.execute(
        "INSERT INTO jobs(id, target_label, spec, model_digest, state, max_attempts, seq, "
        "created_at) VALUES ('old', 'cpu', x'00', 'd1', 'queued', 3, 1, 0)"
    )
    raw.close()
    store = Store(path)
    add_agent(store)
    [held] = lease(store)
    assert held.job_id == "old"
    assert store.job("old")["max_disturbed"] == 4
    store.close()


def test_migration_6_lets_old_tokens_serve_any_label(tmp_path, monkeypatch):
    """Tokens made before tokens named their labels keep serving any label, so deployed
    agents keep working; agents start out of quarantine."""
    path = tmp_path / "old.db"
    raw = database_at_version(path, 5, monkeypatch)
    raw.execute(
        "INSERT INTO tokens(name, hash, created_at) VALUES ('old', ?, 0)", (hash_token("s"),)
    )
    raw.close()
    store = Store(path)
    token = store.token_by_secret("s")
    assert token.labels is None and store.list_tokens()[0]["labels"] is None
    assert store.register_agent(token, "a1", ["pixel7", "other"], {}, 1, "v") == "a1"
    assert store.list_agents()[0]["quarantine"] is None
    store.close()
