"""What only the PostgreSQL backend has: a database that coordinators starting together
migrate once, refusing databases that are not the fleet's, column types as wide as
SQLite's, and writes in one order while leases run beside them."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from coordinator.state import (
    SCHEMA_VERSION,
    STORAGE_ERRORS,
    BlobStore,
    NotAFleetDatabase,
    Store,
    is_transient,
    storage_error_name,
)
from tests.postgres import ThrowawayPostgres
from tests.state.helpers import add_agent, enqueue, lease, lease_row, ok


@pytest.fixture
def url(postgres):
    return postgres.new_database()


def opened(url, tmp_path) -> Store:
    store = Store(url)
    store.set_files_root(tmp_path)
    return store


def test_coordinators_starting_together_migrate_once(url):
    stores, failures = [], []

    def start() -> None:
        try:
            stores.append(Store(url))
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures and len(stores) == 4
    rows = stores[0].db.execute("SELECT version FROM fleet_schema").fetchall()
    assert [tuple(row) for row in rows] == [(SCHEMA_VERSION,)]
    for store in stores:
        store.close()


def test_a_database_with_other_tables_is_refused_untouched(url):
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int)")
    with pytest.raises(NotAFleetDatabase, match="not a fleet database.*other tables"):
        Store(url)
    with psycopg.connect(url) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'")
        assert [row[0] for row in tables] == ["orders"]


def test_a_newer_schema_is_refused(url):
    Store(url).close()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE fleet_schema SET version=version+1")
    with pytest.raises(NotAFleetDatabase, match=r"schema version \d+ is newer.*upgrade"):
        Store(url)


def test_a_password_never_appears_in_the_location(postgres):
    url = postgres.url().replace("postgres@", "postgres:s3cret@")
    store = Store(url)  # trust authentication: the password is not checked, only carried
    assert "s3cret" not in store.location and "***" in store.location
    store.close()


def test_columns_keep_what_sqlite_keeps(url, tmp_path):
    """Times are doubles (PostgreSQL's REAL has 24 bits), nanoseconds 64-bit integers."""
    store = opened(url, tmp_path)
    add_agent(store)
    enqueue(store, BlobStore(store).put(b"m"))
    [job] = lease(store)
    assert lease_row(store, job.lease_id)["expires_at"] == job.expires_at
    store.report("a1", job.job_id, job.lease_id, "ok", ok(session_create_ns=5 * 10**12))
    [result] = store.results(job.job_id)
    assert result["session_create_ns"] == 5 * 10**12
    assert store.result_counts() == {"stored": 1, "accepted": 1}
    assert all(type(n) is int for n in store.result_counts().values())
    store.close()


def test_leases_run_beside_a_write_and_writes_wait_for_it(url, tmp_path):
    """A write transaction holding the writers' lock blocks other writes, not leasing."""
    holder, leaser, writer = (opened(url, tmp_path) for _ in range(3))
    add_agent(holder)
    enqueue(holder, BlobStore(holder).put(b"m"), n=2)
    written = threading.Event()
    with holder.transaction():
        holder.add_blob("f" * 64, 1)
        started = time.monotonic()
        assert len(lease(leaser, max_jobs=1)) == 1
        assert time.monotonic() - started < 5
        thread = threading.Thread(target=lambda: (writer.add_blob("e" * 64, 1), written.set()))
        thread.start()
        assert not written.wait(1.0)  # the other write waits for this one
    assert written.wait(10)
    thread.join()
    for store in (holder, leaser, writer):
        store.close()


def test_a_lease_skips_the_jobs_another_lease_holds(url, tmp_path):
    first, second = opened(url, tmp_path), opened(url, tmp_path)
    add_agent(first)
    held, free = enqueue(first, BlobStore(first).put(b"m"), n=2)
    with first.transaction("rows"):
        first.db.execute("SELECT id FROM jobs WHERE id=? FOR UPDATE", (held,))
        [job] = lease(second, max_jobs=2)
        assert job.job_id == free
    assert [job.job_id for job in lease(first, max_jobs=2)] == [held]
    first.close()
    second.close()


def test_a_lost_connection_is_transient_and_opened_again(url, tmp_path):
    """The server dropping the connection (a restart, a failover) fails the call that met
    it with an error callers retry, and the next call connects again."""
    store = opened(url, tmp_path)
    add_agent(store)
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname=current_database() AND pid <> pg_backend_pid()"
        )
    with pytest.raises(STORAGE_ERRORS) as met:
        store.list_agents()
    assert is_transient(met.value), storage_error_name(met.value)
    assert [agent["id"] for agent in store.list_agents()] == ["a1"]
    store.close()


def test_data_version_moves_for_queued_jobs_not_for_heartbeats(url, tmp_path):
    """Long-polling agents wake when another coordinator (or the CLI) queues a job, and not
    at every heartbeat anyone commits."""
    watcher, other = opened(url, tmp_path), opened(url, tmp_path)
    add_agent(other)
    version = watcher.data_version()
    other.heartbeat("a1", [], {}, 60.0)
    assert watcher.data_version() == version
    enqueue(other, BlobStore(other).put(b"m"))
    assert wait_until(lambda: watcher.data_version() != version)
    watcher.close()
    other.close()


def wait_until(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_a_server_that_is_down_is_transient_and_found_again(tmp_path):
    """While the server is down (restarting, failing over) a call fails with an error that
    callers retry; once it is back, the next call connects again."""
    server = ThrowawayPostgres()
    try:
        store = opened(server.new_database(), tmp_path)
        add_agent(store)
        server.halt()
        for _ in range(2):  # the broken connection, then the refused reconnection
            with pytest.raises(STORAGE_ERRORS) as met:
                store.list_agents()
            assert is_transient(met.value), met.value
        server.start()
        assert [agent["id"] for agent in store.list_agents()] == ["a1"]
        store.close()
    finally:
        server.stop()


def test_a_transaction_that_cannot_begin_leaves_the_connection_usable(url, tmp_path):
    """A write whose wait for the writers' lock times out is rolled back, and the
    connection's next transactions run as usual."""
    holder, waiter = opened(url, tmp_path), opened(url, tmp_path)
    waiter.db.execute("SET lock_timeout = '100ms'")
    with holder.transaction():
        with pytest.raises(STORAGE_ERRORS) as met:
            waiter.add_blob("e" * 64, 1)
        assert is_transient(met.value)  # 55P03, lock not available
    waiter.add_blob("e" * 64, 1)
    assert waiter.blob_size("e" * 64) == 1
    holder.close()
    waiter.close()
