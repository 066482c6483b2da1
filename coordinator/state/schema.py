"""The fleet database's schema: its versioned migrations, one list for every backend (in
SQLite's dialect; a backend translates the column types it spells otherwise)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coordinator.state.backend import Backend

__all__ = ["SCHEMA_VERSION", "FLEET_TABLES", "migrate"]

_MIGRATIONS: list[str] = [
    # 1: the fleet
    """
    CREATE TABLE tokens (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, hash TEXT NOT NULL UNIQUE,
        created_at REAL NOT NULL, revoked_at REAL, agent_id TEXT);
    CREATE TABLE agents (
        id TEXT PRIMARY KEY, token_id INTEGER NOT NULL REFERENCES tokens(id),
        labels TEXT NOT NULL, device TEXT NOT NULL, threads INTEGER, version TEXT,
        registered_at REAL NOT NULL, last_seen REAL NOT NULL, online INTEGER NOT NULL,
        jobs_done INTEGER NOT NULL DEFAULT 0, telemetry TEXT,
        forgotten INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE agent_labels (
        agent_id TEXT NOT NULL REFERENCES agents(id), label TEXT NOT NULL,
        PRIMARY KEY (agent_id, label));
    CREATE TABLE blobs (digest TEXT PRIMARY KEY, size INTEGER NOT NULL, created_at REAL NOT NULL);
    CREATE TABLE jobs (
        id TEXT PRIMARY KEY, target_label TEXT, target_agent TEXT, spec BLOB NOT NULL,
        model_digest TEXT NOT NULL REFERENCES blobs(digest), state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0, max_attempts INTEGER NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0, seq INTEGER NOT NULL, campaign TEXT,
        created_at REAL NOT NULL, finished_at REAL, error TEXT, accepted_result INTEGER);
    CREATE INDEX jobs_by_label ON jobs(state, target_label, priority DESC, seq);
    CREATE INDEX jobs_by_agent ON jobs(state, target_agent, priority DESC, seq);
    CREATE INDEX jobs_by_campaign ON jobs(campaign, state);
    CREATE TABLE leases (
        id TEXT PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(id),
        agent_id TEXT NOT NULL REFERENCES agents(id), attempt INTEGER NOT NULL,
        issued_at REAL NOT NULL, expires_at REAL NOT NULL, state TEXT NOT NULL);
    CREATE INDEX leases_active ON leases(state, expires_at);
    CREATE INDEX leases_by_agent ON leases(agent_id, state);
    CREATE INDEX leases_by_job ON leases(job_id);
    CREATE TABLE results (
        id INTEGER PRIMARY KEY, job_id TEXT NOT NULL REFERENCES jobs(id),
        lease_id TEXT NOT NULL UNIQUE REFERENCES leases(id), agent_id TEXT NOT NULL,
        status TEXT NOT NULL, message TEXT, samples BLOB, n INTEGER,
        median_ms REAL, mean_ms REAL, std_ms REAL, p10_ms REAL, p90_ms REAL, p99_ms REAL,
        cv REAL, session_create_ns INTEGER, first_run_ns INTEGER, warmup_runs INTEGER,
        warmup_ns INTEGER, stop_reason TEXT, peak_rss_bytes INTEGER, telemetry_before TEXT,
        telemetry_after TEXT, runtime_versions TEXT, drift REAL, drift_check TEXT,
        lease_to_report_ns INTEGER, accepted INTEGER NOT NULL, late INTEGER NOT NULL,
        received_at REAL NOT NULL);
    CREATE INDEX results_by_job ON results(job_id);
    """,
    # 2: campaigns, and the ONNX artifacts they share across campaigns and devices
    """
    CREATE TABLE campaigns (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, spec TEXT NOT NULL, state TEXT NOT NULL,
        created_at REAL NOT NULL, started_at REAL, finished_at REAL);
    CREATE TABLE campaign_items (
        campaign_id TEXT NOT NULL REFERENCES campaigns(id), item INTEGER NOT NULL,
        kind TEXT NOT NULL, key TEXT NOT NULL, r INTEGER, w REAL,
        digest TEXT NOT NULL REFERENCES blobs(digest), inputs TEXT NOT NULL,
        PRIMARY KEY (campaign_id, item));
    CREATE TABLE campaign_jobs (
        job_id TEXT PRIMARY KEY REFERENCES jobs(id), campaign_id TEXT NOT NULL,
        item INTEGER NOT NULL, target TEXT NOT NULL, repeat INTEGER NOT NULL);
    CREATE INDEX campaign_jobs_by_campaign ON campaign_jobs(campaign_id, target);
    CREATE TABLE artifacts (
        kind TEXT NOT NULL, key TEXT NOT NULL, weights TEXT NOT NULL,
        digest TEXT NOT NULL REFERENCES blobs(digest), inputs TEXT NOT NULL,
        PRIMARY KEY (kind, key, weights));
    """,
    # 3: each agent's offline window as the serving coordinator set it, so that a listing
    # can tell a stale heartbeat from a live one while no sweeper runs
    """
    ALTER TABLE agents ADD COLUMN offline_after_s REAL;
    """,
    # 4: campaigns are now marked done when their last job finishes; close the ones that
    # finished before, when only reading their status marked them
    """
    UPDATE campaigns SET state='done', finished_at=(SELECT MAX(finished_at) FROM jobs
        WHERE campaign=campaigns.id)
    WHERE state='running' AND NOT EXISTS (SELECT 1 FROM jobs WHERE campaign=campaigns.id
        AND state IN ('queued','leased'));
    """,
    # 5: disturbed measurements: their evidence, how often a job was re-measured for one,
    # how many it may have, and when a re-measure may start (after a cooldown); the
    # conditions the agent measured in (pinned cores, its cooldown before the job)
    """
    ALTER TABLE results ADD COLUMN evidence TEXT;
    ALTER TABLE results ADD COLUMN conditions TEXT;
    ALTER TABLE jobs ADD COLUMN disturbed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE jobs ADD COLUMN max_disturbed INTEGER NOT NULL DEFAULT 4;
    ALTER TABLE jobs ADD COLUMN not_before REAL NOT NULL DEFAULT 0;
    CREATE INDEX jobs_cooling ON jobs(not_before) WHERE not_before > 0;
    """,
    # 6: trust: the labels a token may serve (NULL: any, as every token made before), and
    # agents quarantined for disagreeing with their peers (why, and by how much), and when
    # one was last readmitted (its results from before are not compared again)
    """
    ALTER TABLE tokens ADD COLUMN labels TEXT;
    ALTER TABLE agents ADD COLUMN quarantined_at REAL;
    ALTER TABLE agents ADD COLUMN quarantine_reason TEXT;
    ALTER TABLE agents ADD COLUMN quarantine_ratio REAL;
    ALTER TABLE agents ADD COLUMN readmitted_at REAL;
    """,
    # 7: per-node profiles (onnxruntime's kernel times) of jobs that asked for one
    """
    ALTER TABLE results ADD COLUMN profile TEXT;
    """,
    # 8: end-to-end measurements made elsewhere and imported for a device and target
    """
    CREATE TABLE imports (
        id TEXT PRIMARY KEY, label TEXT NOT NULL, target TEXT NOT NULL, file TEXT NOT NULL,
        sha256 TEXT NOT NULL, lines INTEGER NOT NULL, imported_at REAL NOT NULL,
        UNIQUE (label, target, sha256));
    CREATE TABLE imported (
        import_id TEXT NOT NULL REFERENCES imports(id), line INTEGER NOT NULL,
        key TEXT NOT NULL, latency_ms REAL NOT NULL, metadata TEXT NOT NULL,
        PRIMARY KEY (import_id, line));
    """,
    # 9: fleet-wide settings: the folder of the fleet's files (model blobs, predictors),
    # which every coordinator sharing a PostgreSQL database, and every command, must find
    """
    CREATE TABLE settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
]
SCHEMA_VERSION = len(_MIGRATIONS)
# The tables every fleet database has, from the first migration on.
FLEET_TABLES = {"tokens", "agents", "jobs", "leases", "results", "blobs"}


def migrate(backend: Backend) -> None:
    """Apply the migrations after the database's version, each in its own transaction,
    written in SQLite's dialect and translated by the backend."""
    for number in range(backend.schema_version(), SCHEMA_VERSION):
        with backend.transaction("write"):  # re-read inside the lock: another may have migrated
            if backend.schema_version() != number:
                continue
            for statement in _MIGRATIONS[number].split(";"):  # no ';' inside statements
                if statement.strip():
                    backend.db.execute(backend.ddl(statement))
            backend.set_schema_version(number + 1)
