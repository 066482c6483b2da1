"""The coordinator's state store, blob store and job API, against a real SQLite file.

No mocks: every test opens `Store` on a file in `tmp_path` and checks what the module
docstring of `coordinator/state/sqlite.py` promises (plus the small BlobStore / jobs API).
"""

from __future__ import annotations

import hashlib
import sqlite3
import time

import numpy as np
import pytest

from coordinator.state import BlobStore
from coordinator.services.jobs import BenchOptions, enqueue_model, model_inputs
from coordinator.state import (SCHEMA_VERSION, Forbidden, NotAFleetDatabase, NotFound, Store,
                               hash_token)
from proto.ofafleet.v1 import fleet_pb2 as pb

SPEC = b"spec-bytes"
HOUR = 3600.0


# ----------------------------------------------------------------------------- helpers
@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "fleet.db")
    yield s
    s.close()


@pytest.fixture
def blobs(store):
    return BlobStore(store)


@pytest.fixture
def digest(blobs):
    """A stored model blob that jobs can refer to."""
    return blobs.put(b"model bytes")


def add_agent(store, agent_id="a1", labels=("cpu",), name=None):
    """Create a token, register `agent_id` with it; returns the (now bound) token."""
    secret = store.create_token(name or f"tok-{agent_id}")
    store.register_agent(store.token_by_secret(secret), agent_id, list(labels),
                         {"cpu": "test"}, 1, "0.0-test")
    return store.token_by_secret(secret)


def enqueue(store, digest, n=1, **target):
    target = target or {"label": "cpu"}
    return store.enqueue([(SPEC + bytes([i]), digest) for i in range(n)], **target)


def lease(store, agent_id="a1", max_jobs=1, lease_seconds=HOUR):
    return store.lease_jobs(agent_id, max_jobs, lease_seconds)


def ok(samples=(1_000_000, 2_000_000, 3_000_000), **extra):
    return {"message": "", "samples_ns": list(samples), **extra}


def expire_all(store):
    """Make every active lease overdue and sweep (agents stay online)."""
    store.db.execute("UPDATE leases SET expires_at=expires_at-2*? WHERE state='active'", (HOUR,))
    return store.sweep(offline_after_s=HOUR)


def lease_row(store, lease_id):
    return store.db.execute("SELECT * FROM leases WHERE id=?", (lease_id,)).fetchone()


def agent_row(store, agent_id):
    return store.db.execute("SELECT * FROM agents WHERE id=?", (agent_id,)).fetchone()


# -------------------------------------------------------------------------- migrations
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
    with pytest.raises(NotAFleetDatabase, match=r"fleet.db: not a fleet database.*schema version \d+ is newer.*upgrade"):
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


# ------------------------------------------------------------------------------ tokens
def test_token_secret_is_returned_once_and_stored_hashed(store):
    """Only the sha256 of the secret is anywhere in the database."""
    secret = store.create_token("edge-1")
    assert secret.startswith("ofa_") and len(secret) > 30
    dump = "\n".join(store.db.iterdump())
    assert secret not in dump
    assert secret[4:] not in dump
    assert hash_token(secret) == hashlib.sha256(secret.encode()).hexdigest()
    assert store.db.execute("SELECT hash FROM tokens").fetchall()[0][0] == hash_token(secret)
    token = store.token_by_secret(secret)
    assert (token.name, token.agent_id, token.revoked) == ("edge-1", None, False)
    assert store.token_by_secret(secret + "x") is None
    assert store.create_token("edge-2") != secret


def test_token_names_are_unique_and_non_empty(store):
    store.create_token("dup")
    with pytest.raises(ValueError, match=r"^name: .*'dup'"):
        store.create_token("dup")
    with pytest.raises(ValueError, match=r"^name:"):
        store.create_token("  ")
    assert [t["name"] for t in store.list_tokens()] == ["dup"]


def test_revoke_token(store):
    secret = store.create_token("old")
    store.revoke_token("old")
    assert store.token_by_secret(secret).revoked
    assert store.list_tokens()[0]["revoked_at"] is not None
    with pytest.raises(NotFound, match="old"):
        store.revoke_token("old")  # already revoked
    with pytest.raises(NotFound, match="nope"):
        store.revoke_token("nope")


def test_token_binds_to_its_first_agent(store):
    token = add_agent(store, "a1")
    assert token.agent_id == "a1"
    assert store.list_tokens()[0]["agent_id"] == "a1"
    with pytest.raises(Forbidden, match="a1"):
        store.register_agent(token, "a2", ["cpu"], {}, 1, "v")
    # an empty id means "the one bound to my token"
    assert store.register_agent(token, "", ["cpu"], {}, 1, "v") == "a1"
    assert [a["id"] for a in store.list_agents()] == ["a1"]


def test_register_without_id_gets_a_generated_one(store):
    secret = store.create_token("fresh")
    agent_id = store.register_agent(store.token_by_secret(secret), "", ["x"], {}, 1, "v")
    assert agent_id and store.token_by_secret(secret).agent_id == agent_id


def test_another_token_cannot_take_over_an_agent_id(store):
    add_agent(store, "a1")
    intruder = store.token_by_secret(store.create_token("intruder"))
    with pytest.raises(Forbidden):
        store.register_agent(intruder, "a1", ["cpu"], {}, 1, "v")
    assert store.list_tokens()[1]["agent_id"] is None  # the intruder's token stays unbound


def test_check_agent(store):
    t1 = add_agent(store, "a1")
    t2 = add_agent(store, "a2")
    store.check_agent("a1", t1)
    with pytest.raises(Forbidden):
        store.check_agent("a1", t2)
    with pytest.raises(NotFound):
        store.check_agent("ghost", t1)


def test_forget_agent_then_register_again(store, digest):
    token = add_agent(store, "a1", labels=("cpu", "x86"))
    job_id = enqueue(store, digest)[0]
    held = lease(store)[0]
    store.forget_agent("a1")
    with pytest.raises(NotFound):
        store.check_agent("a1", token)
    assert store.list_agents() == []
    assert store.agent_labels("a1") == []
    assert lease_row(store, held.lease_id)["state"] == "expired"
    assert store.job(job_id)["state"] == "queued"  # its lease was given up
    assert "forgotten" in store.job(job_id)["error"]

    assert store.register_agent(token, "a1", ["cpu", "x86"], {}, 1, "v") == "a1"
    store.check_agent("a1", token)
    assert sorted(store.agent_labels("a1")) == ["cpu", "x86"]
    assert lease(store)[0].job_id == job_id
    with pytest.raises(NotFound):
        store.forget_agent("ghost")


# -------------------------------------------------------------------------------- jobs
def test_enqueue_needs_a_stored_blob(store, digest):
    """An unknown digest is refused and nothing of the batch is queued."""
    with pytest.raises(NotFound, match="model_digest"):
        store.enqueue([(SPEC, digest), (SPEC, "0" * 64)], label="cpu")
    assert store.job_counts() == {}


def test_enqueue_validates_target_and_attempts(store, digest):
    with pytest.raises(ValueError, match="^target:"):
        store.enqueue([(SPEC, digest)], label="cpu", agent_id="a1")
    with pytest.raises(ValueError, match="^target:"):
        store.enqueue([(SPEC, digest)])
    with pytest.raises(ValueError, match="^max_attempts:"):
        store.enqueue([(SPEC, digest)], label="cpu", max_attempts=0)
    assert len(store.enqueue([(SPEC, digest)], label="cpu", max_attempts=1)) == 1


def test_jobs_are_leased_in_enqueue_order(store, digest):
    add_agent(store)
    first = enqueue(store, digest, 3)
    second = enqueue(store, digest, 2)
    seqs = [store.job(j)["seq"] for j in first + second]
    assert seqs == sorted(seqs) and len(set(seqs)) == 5
    got = lease(store, max_jobs=2) + lease(store, max_jobs=10)
    assert [j.job_id for j in got] == first + second
    assert [j.spec for j in got[:3]] == [SPEC + bytes([i]) for i in range(3)]
    assert lease(store, max_jobs=10) == []


def test_higher_priority_jobs_go_first(store, digest):
    add_agent(store)
    low = enqueue(store, digest)
    high = store.enqueue([(SPEC, digest)], label="cpu", priority=5)
    assert [j.job_id for j in lease(store, max_jobs=2)] == high + low


def test_max_jobs_is_respected(store, digest):
    add_agent(store)
    enqueue(store, digest, 5)
    assert len(lease(store, max_jobs=2)) == 2
    assert store.job_counts() == {"leased": 2, "queued": 3}


def test_jobs_go_only_to_matching_labels_or_the_target_agent(store, digest):
    add_agent(store, "cpu-box", labels=("cpu",))
    add_agent(store, "gpu-box", labels=("gpu", "cuda"))
    for_gpu = enqueue(store, digest, label="cuda")
    for_cpu_box = enqueue(store, digest, agent_id="cpu-box")
    for_nobody = enqueue(store, digest, label="tpu")
    assert [j.job_id for j in lease(store, "cpu-box", 10)] == for_cpu_box
    assert [j.job_id for j in lease(store, "gpu-box", 10)] == for_gpu
    assert store.job(for_nobody[0])["state"] == "queued"


def test_attempt_numbers_increase_per_lease(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    attempts = []
    for _ in range(3):
        held = lease(store)[0]
        assert held.job_id == job_id
        attempts.append(held.attempt)
        assert lease_row(store, held.lease_id)["attempt"] == held.attempt
        expire_all(store)
    assert attempts == [1, 2, 3]
    assert store.job(job_id)["attempts"] == 3


# ------------------------------------------------------------------------------ leases
def test_sweep_requeues_an_overdue_lease(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    held = lease(store, lease_seconds=-1)[0]  # already overdue
    assert held.expires_at < time.time()
    assert store.sweep(offline_after_s=HOUR) == {"expired": 1, "offline": 0,
                                                 "requeued_from_offline": 0}
    assert lease_row(store, held.lease_id)["state"] == "expired"
    job = store.job(job_id)
    assert job["state"] == "queued" and "expired" in job["error"]
    assert lease(store)[0].attempt == held.attempt + 1
    assert store.sweep(offline_after_s=HOUR)["expired"] == 0  # the new lease is not overdue


def test_expiry_after_max_attempts_fails_the_job(store, digest):
    add_agent(store)
    job_id = store.enqueue([(SPEC, digest)], label="cpu", max_attempts=2)[0]
    for _ in range(2):
        assert lease(store, lease_seconds=-1)
        store.sweep(offline_after_s=HOUR)
    job = store.job(job_id)
    assert job["state"] == "failed" and job["finished_at"] is not None
    assert "attempt 2 of 2" in job["error"] and "expired" in job["error"]
    assert lease(store) == []


def test_heartbeat_renews_listed_leases_and_returns_lost_ones(store, digest):
    add_agent(store, "a1")
    add_agent(store, "a2")
    enqueue(store, digest, 3)
    mine = lease(store, "a1", lease_seconds=10)[0]
    done = lease(store, "a1", lease_seconds=10)[0]
    store.report("a1", done.job_id, done.lease_id, "ok", ok())
    theirs = lease(store, "a2", lease_seconds=10)[0]
    before = lease_row(store, mine.lease_id)["expires_at"]

    lost = store.heartbeat("a1", [mine.lease_id, done.lease_id, theirs.lease_id, "nope"],
                           {"temp_c": 50}, lease_seconds=HOUR)
    assert lost == [done.lease_id, theirs.lease_id, "nope"]
    assert lease_row(store, mine.lease_id)["expires_at"] >= before + HOUR - 20
    assert lease_row(store, theirs.lease_id)["expires_at"] == theirs.expires_at  # untouched
    assert store.list_agents()[0]["telemetry"] == {"temp_c": 50}


def test_heartbeat_does_not_keep_unlisted_leases_alive(store, digest):
    """A restarted agent (same id) no longer knows its old lease: it must run out."""
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    orphan = lease(store, lease_seconds=-1)[0]
    assert store.heartbeat("a1", [], {}, lease_seconds=HOUR) == []
    assert lease_row(store, orphan.lease_id)["expires_at"] == orphan.expires_at
    assert store.sweep(offline_after_s=HOUR)["expired"] == 1
    assert store.job(job_id)["state"] == "queued"


def test_silent_agents_go_offline_and_their_leases_are_requeued(store, digest):
    add_agent(store, "quiet")
    add_agent(store, "chatty")
    job_id = enqueue(store, digest, agent_id="quiet")[0]
    held = lease(store, "quiet")[0]  # a long lease: only going offline frees it
    store.db.execute("UPDATE agents SET last_seen=last_seen-100 WHERE id='quiet'")
    assert store.sweep(offline_after_s=30) == {"expired": 0, "offline": 1,
                                               "requeued_from_offline": 1}
    assert agent_row(store, "quiet")["online"] == 0
    assert agent_row(store, "chatty")["online"] == 1
    assert lease_row(store, held.lease_id)["state"] == "expired"
    job = store.job(job_id)
    assert job["state"] == "queued" and "went offline" in job["error"]
    assert store.heartbeat("quiet", [held.lease_id], {}, HOUR) == [held.lease_id]
    assert agent_row(store, "quiet")["online"] == 1
    assert lease(store, "quiet")[0].attempt == 2


# ----------------------------------------------------------------------------- reports
def test_ok_report_completes_the_job_with_stats_from_raw_samples(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    held = lease(store)[0]
    samples = [5_123_457, 4_999_999, 5_500_001, 7_000_003, 5_000_000, 4_800_000]
    drift = {"drift": 0.02, "reference_ms": 1.5}
    outcome = store.report("a1", job_id, held.lease_id, "ok",
                           ok(samples, drift=drift, stop_reason="min_runs", warmup_runs=3))
    assert (outcome.accepted, outcome.duplicate, outcome.late) == (True, False, False)
    job = store.job(job_id)
    [result] = store.results(job_id)
    assert job["state"] == "done" and job["finished_at"] is not None and job["error"] is None
    assert job["accepted_result"] == result["id"]
    assert agent_row(store, "a1")["jobs_done"] == 1
    assert lease_row(store, held.lease_id)["state"] == "reported"
    ms = np.asarray(samples) / 1e6
    assert result["n"] == len(samples)
    assert result["median_ms"] == pytest.approx(float(np.median(samples)) / 1e6, rel=1e-12)
    assert result["mean_ms"] == pytest.approx(float(ms.mean()), rel=1e-12)
    assert result["p90_ms"] == pytest.approx(float(np.percentile(ms, 90)), rel=1e-12)
    assert result["std_ms"] == pytest.approx(float(ms.std(ddof=1)), rel=1e-12)
    assert (result["accepted"], result["late"], result["status"]) == (1, 0, "ok")
    assert (result["stop_reason"], result["warmup_runs"]) == ("min_runs", 3)
    assert result["drift"] == pytest.approx(0.02)


def test_raw_samples_round_trip_exactly(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    held = lease(store)[0]
    samples = [1, 0, 2**62 + 7, 123_456_789_012, 999_999_999_999_999_999, 3]
    store.report("a1", job_id, held.lease_id, "ok", ok(samples))
    got = store.results(job_id)[0]["samples_ns"]
    assert got == samples and all(type(v) is int for v in got)
    raw = store.db.execute("SELECT samples FROM results").fetchone()[0]
    assert raw == np.asarray(samples, dtype="<i8").tobytes()  # int64 little-endian


def test_duplicate_report_is_idempotent(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    held = lease(store)[0]
    first = store.report("a1", job_id, held.lease_id, "ok", ok())
    again = store.report("a1", job_id, held.lease_id, "ok", ok([9, 9, 9]))
    assert again.duplicate and not first.duplicate
    assert (again.accepted, again.late) == (first.accepted, first.late)
    [result] = store.results(job_id)
    assert result["samples_ns"] == ok()["samples_ns"]
    assert agent_row(store, "a1")["jobs_done"] == 1


def test_late_report_is_accepted_while_the_job_is_not_done(store, digest):
    add_agent(store)
    job_id = enqueue(store, digest)[0]
    held = lease(store, lease_seconds=-1)[0]
    store.sweep(offline_after_s=HOUR)
    assert store.job(job_id)["state"] == "queued"
    outcome = store.report("a1", job_id, held.lease_id, "ok", ok())
    assert (outcome.accepted, outcome.late) == (True, True)
    assert store.job(job_id)["state"] == "done"
    assert store.results(job_id)[0]["late"] == 1
    assert lease(store) == []  # no longer queued


def test_late_report_for_a_done_job_is_stored_but_not_accepted(store, digest):
    add_agent(store, "slow")
    add_agent(store, "fast")
    job_id = enqueue(store, digest)[0]
    stale = lease(store, "slow", lease_seconds=-1)[0]
    store.sweep(offline_after_s=HOUR)
    fresh = lease(store, "fast")[0]
    assert store.report("fast", job_id, fresh.lease_id, "ok", ok()).accepted
    outcome = store.report("slow", job_id, stale.lease_id, "ok", ok([7, 8, 9]))
    assert (outcome.accepted, outcome.duplicate, outcome.late) == (False, False, True)
    results = store.results(job_id)
    assert [(r["agent_id"], r["accepted"], r["late"]) for r in results] == [
        ("fast", 1, 0), ("slow", 0, 1)]
    assert store.job(job_id)["accepted_result"] == results[0]["id"]
    assert agent_row(store, "slow")["jobs_done"] == 0


def test_exactly_one_ok_result_is_accepted_per_job(store, digest):
    """The stale lease reports first and wins; the current lease's report is refused."""
    add_agent(store, "a1")
    add_agent(store, "a2")
    job_id = enqueue(store, digest)[0]
    first = lease(store, "a1", lease_seconds=-1)[0]
    store.sweep(offline_after_s=HOUR)
    second = lease(store, "a2")[0]
    assert store.report("a1", job_id, first.lease_id, "ok", ok()).accepted
    assert lease_row(store, second.lease_id)["state"] == "superseded"
    assert store.heartbeat("a2", [second.lease_id], {}, HOUR) == [second.lease_id]
    outcome = store.report("a2", job_id, second.lease_id, "ok", ok())
    assert not outcome.accepted and outcome.late  # its lease was no longer active
    accepted = [r for r in store.results(job_id) if r["accepted"] and r["status"] == "ok"]
    assert len(accepted) == 1 and accepted[0]["agent_id"] == "a1"
    assert store.job(job_id)["accepted_result"] == accepted[0]["id"]


def test_report_checks_agent_and_lease(store, digest):
    add_agent(store, "a1")
    add_agent(store, "a2")
    job_a, job_b = enqueue(store, digest, 2)
    held = lease(store, "a1")[0]
    with pytest.raises(Forbidden):
        store.report("a2", job_a, held.lease_id, "ok", ok())
    with pytest.raises(NotFound, match="lease_id"):
        store.report("a1", job_a, "no-such-lease", "ok", ok())
    with pytest.raises(NotFound):
        store.report("a1", job_b, held.lease_id, "ok", ok())  # lease of another job
    assert store.results(job_a) == [] and store.job(job_a)["state"] == "leased"


def test_released_requeues_without_consuming_an_attempt(store, digest):
    add_agent(store)
    job_id = store.enqueue([(SPEC, digest)], label="cpu", max_attempts=1)[0]
    held = lease(store)[0]
    outcome = store.report("a1", job_id, held.lease_id, "released", {"message": "stopping"})
    assert not outcome.accepted
    job = store.job(job_id)
    assert (job["state"], job["attempts"]) == ("queued", 0)
    assert lease_row(store, held.lease_id)["state"] == "released"
    again = lease(store)[0]  # max_attempts=1 and still leasable
    assert again.attempt == 1
    assert store.report("a1", job_id, again.lease_id, "ok", ok()).accepted


def test_failed_requeues_until_max_attempts_then_fails(store, digest):
    add_agent(store)
    job_id = store.enqueue([(SPEC, digest)], label="cpu", max_attempts=2)[0]
    first = lease(store)[0]
    store.report("a1", job_id, first.lease_id, "failed", {"message": "boom one"})
    job = store.job(job_id)
    assert job["state"] == "queued" and "boom one" in job["error"]
    second = lease(store)[0]
    assert second.attempt == 2
    store.report("a1", job_id, second.lease_id, "failed", {"message": "boom two"})
    job = store.job(job_id)
    assert job["state"] == "failed" and job["finished_at"] is not None
    assert "boom two" in job["error"] and "attempt 2 of 2" in job["error"]
    assert lease(store) == []
    assert [r["message"] for r in store.results(job_id)] == ["boom one", "boom two"]


# -------------------------------------------------------------------------- cancelling
def test_cancel_jobs(store, digest):
    add_agent(store)
    queued, leased, done = enqueue(store, digest, 3)
    held = {j.job_id: j for j in lease(store, max_jobs=2)}
    store.report("a1", done, lease(store)[0].lease_id, "ok", ok())
    assert store.cancel_jobs([queued, leased, done, "ghost"]) == 2
    assert [store.job(j)["state"] for j in (queued, leased, done)] == [
        "cancelled", "cancelled", "done"]
    assert lease(store, max_jobs=10) == []
    lease_id = held[leased].lease_id
    assert store.heartbeat("a1", [lease_id], {}, HOUR) == [lease_id]
    outcome = store.report("a1", leased, lease_id, "ok", ok())
    assert not outcome.accepted and not outcome.duplicate
    assert outcome.late  # the lease ended with the cancel, though its time had not run out
    assert store.results(leased)[0]["accepted"] == 0
    assert store.job(leased)["state"] == "cancelled" and store.job(leased)["accepted_result"] is None
    assert agent_row(store, "a1")["jobs_done"] == 1  # only `done`


# --------------------------------------------------------------------------- BlobStore
def test_blob_put_is_content_addressed(store, tmp_path):
    blobs = BlobStore(store)
    data = b"\x00onnx?" * 100
    digest = blobs.put(data)
    assert digest == hashlib.sha256(data).hexdigest()
    path = tmp_path / "fleet.db.blobs" / digest[:2] / digest
    assert blobs.path(digest) == path and path.read_bytes() == data
    assert blobs.put(data, expected_digest=digest) == digest  # again: no-op
    assert store.blob_size(digest) == len(data)
    assert store.db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 1
    assert [p.name for p in path.parent.iterdir()] == [digest]  # no temp file left


def test_blob_put_refusals(store):
    blobs = BlobStore(store, max_bytes=10)
    with pytest.raises(ValueError, match="not to the given"):
        blobs.put(b"abc", expected_digest="0" * 64)
    with pytest.raises(ValueError, match="limit of 10 bytes"):
        blobs.put(b"x" * 11)
    with pytest.raises(ValueError, match="empty"):
        blobs.put(b"")
    assert store.db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 0
    assert list(blobs.root.rglob("*")) == []


def test_blob_read_in_chunks(store):
    blobs = BlobStore(store)
    data = bytes(range(256)) * 40 + b"tail"
    digest = blobs.put(data)
    chunks, offset = [], 0
    while offset < len(data):
        chunk, total = blobs.read(digest, offset, 1000)
        assert total == len(data) and 0 < len(chunk) <= 1000
        chunks.append(chunk)
        offset += len(chunk)
    assert b"".join(chunks) == data and len(chunks) == 11
    assert blobs.read(digest, len(data), 1000) == (b"", len(data))
    with pytest.raises(ValueError, match="^offset:"):
        blobs.read(digest, len(data) + 1, 10)


def test_blob_unknown_and_malformed_digests(store):
    blobs = BlobStore(store)
    with pytest.raises(NotFound, match="no blob"):
        blobs.read("ab" * 32, 0, 10)
    for bad in ("AB" * 32, "ab" * 31, "../../etc/passwd", ""):
        with pytest.raises(ValueError, match="^digest:"):
            blobs.path(bad)
        with pytest.raises(ValueError, match="^digest:"):
            blobs.read(bad, 0, 10)


# ----------------------------------------------------------------------------- jobs.py
@pytest.fixture(scope="module")
def lut_model():
    """(lut_key, Artifact) of one real exported LUT entry."""
    from ofa.config import SubnetConfig
    from ofa.nn.export import export_lut_entries

    return next(iter(export_lut_entries(SubnetConfig.smallest(r=64)).items()))


def test_model_inputs_of_real_onnx(lut_model):
    _, artifact = lut_model
    [(name, dims)] = model_inputs(artifact.onnx)
    assert name == "input" and dims == list(artifact.input_shape)


@pytest.mark.parametrize("data", [b"not an onnx model at all", b"", b"\x0a\x03abc"],
                         ids=["text", "empty", "other-protobuf"])
def test_model_inputs_refuses_non_onnx(data):
    with pytest.raises(ValueError, match="^model: not an ONNX model"):
        model_inputs(data)


def test_model_inputs_refuses_dynamic_shapes():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
    with pytest.raises(ValueError, match="dynamic shape"):
        model_inputs(helper.make_model(graph).SerializeToString())


def test_enqueue_model_stores_the_blob_once(store, lut_model):
    key, artifact = lut_model
    blobs = BlobStore(store)
    options = BenchOptions(threads=2, min_runs=50)
    ids = enqueue_model(store, blobs, artifact.onnx, label="cpu", options=options,
                        lut_key=key, repeats=3, campaign="c1")
    ids += enqueue_model(store, blobs, artifact.onnx, label="cpu", lut_key=key)
    assert len(set(ids)) == 4
    assert store.db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0] == 1
    assert len([p for p in blobs.root.rglob("*") if p.is_file()]) == 1
    assert store.job_counts("c1") == {"queued": 3}
    job = store.job(ids[0])
    spec = pb.BenchSpec.FromString(job["spec"])
    assert spec.lut_key == key and spec.model_digest == job["model_digest"] == artifact.sha256
    assert spec.model_size == len(artifact.onnx)
    assert [(i.name, list(i.dims)) for i in spec.inputs] == [("input", list(artifact.input_shape))]
    assert (spec.threads, spec.min_runs, spec.runtime) == (2, 50, "onnxruntime")


def test_enqueue_model_refuses_non_onnx_before_storing(store):
    blobs = BlobStore(store)
    with pytest.raises(ValueError, match="^model: not an ONNX model"):
        enqueue_model(store, blobs, b"garbage bytes", label="cpu")
    assert store.job_counts() == {} and store.db.execute("SELECT * FROM blobs").fetchall() == []


def test_bench_options_from_dict():
    options = BenchOptions.from_dict({"threads": 4, "min_time_s": 0.5, "runtime": "torch"})
    assert (options.threads, options.min_time_s, options.runtime) == (4, 0.5, "torch")
    assert BenchOptions.from_dict({}) == BenchOptions()
    with pytest.raises(ValueError, match=r"^settings: unknown field\(s\) bogus, thread;"):
        BenchOptions.from_dict({"thread": 4, "bogus": 1})
    with pytest.raises(ValueError, match=r"^settings\.min_runs: expected >= 0, got -1"):
        BenchOptions.from_dict({"min_runs": -1})
    with pytest.raises(ValueError, match=r"^settings\.runtime:"):
        BenchOptions.from_dict({"runtime": "tflite"})


# ------------------------------------------------------------------- issue 12 hardening
def test_a_file_that_is_not_a_fleet_database_is_refused_untouched(tmp_path):
    """Empty, text, foreign SQLite: NotAFleetDatabase naming the path and the reason, and
    the file is left exactly as it was."""
    foreign = tmp_path / "other.db"
    raw = sqlite3.connect(foreign)
    raw.execute("CREATE TABLE photos (id INTEGER)")
    raw.close()
    cases = {tmp_path / "empty.db": (b"", "empty"),
             tmp_path / "notes.db": (b"hello, not sqlite\n" * 100, "not a database"),
             foreign: (foreign.read_bytes(), "without the fleet's tables")}
    for path, (content, reason) in cases.items():
        path.write_bytes(content)
        with pytest.raises(NotAFleetDatabase, match=rf"{path.name}: not a fleet database.*{reason}"):
            Store(path)
        assert path.read_bytes() == content
        assert isinstance(NotAFleetDatabase(path, reason), sqlite3.DatabaseError)


def test_a_late_failure_neither_counts_nor_leaves_two_accepted_rows(store, digest):
    """A FAILED report from an expired lease is stored, flagged late, not accepted, and does
    not touch the job; the next lease's OK is then the job's only accepted row."""
    add_agent(store, "a1")
    add_agent(store, "a2")
    (job_id,) = enqueue(store, digest)
    (first,) = lease(store, "a1")
    expire_all(store)
    (second,) = lease(store, "a2")
    failed = store.report("a1", job_id, first.lease_id, "failed", {"message": "boom"})
    assert (failed.accepted, failed.late) == (False, True)
    assert store.job(job_id)["state"] == "leased"
    assert store.report("a2", job_id, second.lease_id, "ok", ok()).accepted
    assert [(r["status"], r["accepted"]) for r in store.results(job_id)] == [
        ("failed", 0), ("ok", 1)]


def test_a_failure_reported_after_expiry_but_before_the_sweep_is_not_accepted(store, digest):
    """The lease is overdue but still `active` (no sweep yet): the failure is late, not
    accepted, and the job is requeued as the sweep would have done."""
    add_agent(store, "a1")
    (job_id,) = enqueue(store, digest)
    (first,) = lease(store, "a1")
    store.db.execute("UPDATE leases SET expires_at=expires_at-2*?", (HOUR,))  # no sweep
    failed = store.report("a1", job_id, first.lease_id, "failed", {"message": "boom"})
    assert (failed.accepted, failed.late) == (False, True)
    assert store.job(job_id)["state"] == "queued"
    (again,) = lease(store, "a1")
    assert store.report("a1", job_id, again.lease_id, "ok", ok()).accepted


def test_an_agent_registering_again_gives_up_its_old_leases(store, digest):
    """A restarted agent (same id) no longer runs the jobs it held: they are requeued at
    once, counting the attempt, instead of waiting out the lease."""
    token = add_agent(store, "a1")
    (job_id,) = enqueue(store, digest)
    (held,) = lease(store, "a1")
    store.register_agent(token, "a1", ["cpu"], {}, 1, "v")
    assert lease_row(store, held.lease_id)["state"] == "expired"
    job = store.job(job_id)
    assert (job["state"], job["attempts"]) == ("queued", 1)
    assert "restarted" in job["error"]
    assert lease(store, "a1")[0].attempt == 2


def test_listing_judges_online_from_the_heartbeat_age(store):
    """An agent whose last heartbeat is older than its offline window is listed offline,
    although no sweeper has run to clear its flag."""
    token = add_agent(store, "a1")
    store.register_agent(token, "a1", ["cpu"], {}, 1, "v", offline_after_s=30)
    assert store.list_agents()[0]["online"] == 1
    store.db.execute("UPDATE agents SET last_seen=last_seen-31")
    assert agent_row(store, "a1")["online"] == 1  # the stale flag
    assert store.list_agents()[0]["online"] == 0


def test_heartbeat_of_many_ids_is_one_query(store, digest):
    """Duplicates and unknown ids come back as lost, in the order given; known ones renew."""
    add_agent(store, "a1")
    enqueue(store, digest)
    (held,) = lease(store, "a1")
    assert store.heartbeat("a1", ["x", held.lease_id, "x", held.lease_id], {}, HOUR) == ["x", "x"]


def test_identifiers_with_a_trailing_newline_are_malformed(store):
    with pytest.raises(ValueError, match="^digest:"):
        BlobStore(store).path("ab" * 32 + "\n")


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


def test_migration_4_closes_campaigns_that_finished_before(tmp_path, digest):
    """Before version 4 a campaign became done only when its status was read: opening such
    a database marks the finished ones done, and leaves the others running."""
    path = tmp_path / "fleet.db"
    store = Store(path)
    add_agent(store, "a1")
    for name, finished in (("finished", True), ("unfinished", False)):
        store.db.execute("INSERT INTO campaigns(id, name, spec, state, created_at) VALUES "
                         "(?, ?, '{}', 'running', 0)", (name, name))
        (job_id,) = enqueue(store, digest, campaign=name, label="cpu")
        if finished:
            store.db.execute("UPDATE jobs SET state='done', finished_at=5 WHERE id=?", (job_id,))
    store.db.execute("PRAGMA user_version=3")
    store.close()
    store = Store(path)
    states = dict(store.db.execute("SELECT id, state FROM campaigns").fetchall())
    assert states == {"finished": "done", "unfinished": "running"}
    finished_at = store.db.execute("SELECT finished_at FROM campaigns WHERE id='finished'")
    assert finished_at.fetchone()[0] == 5
    store.close()
