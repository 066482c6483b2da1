"""Helpers of the state's contract tests: short ways to reach a state, and the white-box
hooks that age leases and heartbeats or read a row the interface does not return (in SQL
that both SQLite and PostgreSQL take)."""

from __future__ import annotations

import time

from coordinator.state import Store

SPEC = b"spec-bytes"
HOUR = 3600.0


def add_agent(store, agent_id="a1", labels=("cpu",), name=None):
    """Create a token, register `agent_id` with it; returns the (now bound) token."""
    secret = store.create_token(name or f"tok-{agent_id}")
    store.register_agent(
        store.token_by_secret(secret), agent_id, list(labels), {"cpu": "test"}, 1, "0.0-test"
    )
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
    age_leases(store, 2 * HOUR)
    return store.sweep(offline_after_s=HOUR)


# ------------------------------------------------------------------- white-box hooks
def age_leases(store: Store, seconds: float) -> None:
    """Move every active lease's expiry `seconds` into the past (no sweep)."""
    store.db.execute("UPDATE leases SET expires_at=expires_at-? WHERE state='active'", (seconds,))


def age_heartbeats(store: Store, seconds: float, agent_id: str | None = None) -> None:
    """Make the last heartbeat of one agent (or of all) `seconds` older."""
    if agent_id is None:
        store.db.execute("UPDATE agents SET last_seen=last_seen-?", (seconds,))
    else:
        store.db.execute("UPDATE agents SET last_seen=last_seen-? WHERE id=?", (seconds, agent_id))


def lease_row(store: Store, lease_id):
    return store.db.execute("SELECT * FROM leases WHERE id=?", (lease_id,)).fetchone()


def agent_row(store: Store, agent_id):
    return store.db.execute("SELECT * FROM agents WHERE id=?", (agent_id,)).fetchone()


def blob_count(store: Store) -> int:
    return store.db.execute("SELECT COUNT(*) FROM blobs").fetchone()[0]


def disturbed(samples=(9_000_000, 9_500_000, 30_000_000), reasons=("cpu_wait 0.4 > 0.05",)):
    """A disturbed result: measured, with the evidence of why it does not count."""
    return ok(samples, evidence={"cpu_wait": 0.4, "reasons": list(reasons)})


def end_cooldowns(store: Store) -> None:
    """Make every cooling-down job's cooldown end now (no sweep)."""
    store.db.execute("UPDATE jobs SET not_before=? WHERE not_before>0", (time.time() - 1,))
