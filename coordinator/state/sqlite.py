"""The coordinator's state in SQLite: tokens, agents, jobs, leases, results, blob index.

Contract (what callers may rely on):
- Every method is one transaction; a crash leaves the database as before or after it.
- A job is `queued`, `leased`, `done`, `failed` or `cancelled`. Leasing moves it to `leased`
  with a new lease (attempt = leases issued so far). Expiry or an agent going offline
  requeues it, or fails it with the reason once `max_attempts` leases have been issued.
- Reports are idempotent by lease id. Exactly one OK result is accepted per job; results
  for a job that is already finished are stored with `accepted = 0`, and results of a lease
  that was no longer active are flagged `late = 1`.
- Statistics are computed from the raw samples, which are stored as int64 little-endian.

The database uses WAL so that CLI processes can read (and enqueue) while the server runs.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from agent.stats import summarize
from coordinator.state.errors import (Forbidden, NotAFleetDatabase, NotFound, UnknownAgent,
                                      UnknownLease)

__all__ = ["Store", "Token", "LeasedJob", "ReportOutcome", "NotFound", "UnknownAgent",
           "UnknownLease", "Forbidden", "NotAFleetDatabase", "SCHEMA_VERSION", "hash_token",
           "DEFAULT_OFFLINE_AFTER_S"]

TERMINAL = ("done", "failed", "cancelled")
# How long an agent may stay silent before listings call it offline when no server has told
# the store its own window (FleetSettings' default: 3 heartbeats of 5 s).
DEFAULT_OFFLINE_AFTER_S = 15.0

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
]
_TABLES = {"tokens", "agents", "jobs", "leases", "results", "blobs"}
SCHEMA_VERSION = len(_MIGRATIONS)


@dataclass(frozen=True)
class Token:
    id: int
    name: str
    agent_id: str | None
    revoked: bool


@dataclass(frozen=True)
class LeasedJob:
    job_id: str
    lease_id: str
    expires_at: float
    attempt: int
    spec: bytes


@dataclass(frozen=True)
class ReportOutcome:
    accepted: bool
    duplicate: bool
    late: bool


def hash_token(secret: str) -> str:
    """Tokens are stored only as their sha256."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


_SQLITE_HEADER = b"SQLite format 3\x00"


def _check_header(path: Path) -> None:
    """An existing file must start as an SQLite database does: SQLite itself takes a file
    shorter than its header for a new, empty database and would write ours into it."""
    with path.open("rb") as f:
        head = f.read(len(_SQLITE_HEADER))
    if not head:
        raise NotAFleetDatabase(path, "the file is empty")
    if head != _SQLITE_HEADER:
        raise NotAFleetDatabase(path, "file is not a database (no SQLite header)")


class Store:
    def __init__(self, path: str | Path) -> None:
        """Open (or create, when missing) a fleet database. Any other file that is not one
        raises NotAFleetDatabase before anything is written to it."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            _check_header(self.path)
        self.db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False,
                                  timeout=10.0)
        try:
            self.db.row_factory = sqlite3.Row
            version = self._check_schema()
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.execute("PRAGMA busy_timeout=10000")
            self.db.execute("PRAGMA foreign_keys=ON")
            self._migrate(version)
        except BaseException:
            self.db.close()
            raise

    def close(self) -> None:
        self.db.close()

    def _check_schema(self) -> int:
        """The file's schema version, after checking that it is ours (or new and empty)."""
        try:
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in self.db.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.DatabaseError as exc:  # "file is not a database", or damaged
            raise NotAFleetDatabase(self.path, str(exc)) from None
        if version > SCHEMA_VERSION:
            raise NotAFleetDatabase(self.path, f"schema version {version} is newer than this "
                                    f"coordinator's ({SCHEMA_VERSION}); upgrade ofa-fleet")
        if (tables or version) and not (version and _TABLES <= tables):
            raise NotAFleetDatabase(self.path, "an SQLite file without the fleet's tables")
        return version

    def _migrate(self, version: int) -> None:
        for number in range(version, SCHEMA_VERSION):
            with self.transaction():  # re-read inside the lock: another process may have migrated
                if self.db.execute("PRAGMA user_version").fetchone()[0] != number:
                    continue
                for statement in _MIGRATIONS[number].split(";"):  # no ';' inside statements
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version={number + 1}")

    def transaction(self):
        """One transaction; methods called inside it join it instead of opening their own."""
        return _Transaction(self.db)


    def data_version(self) -> int:
        """Changes when another connection (another process) commits."""
        return self.db.execute("PRAGMA data_version").fetchone()[0]

    # -------------------------------------------------------------------- tokens
    def create_token(self, name: str, agent_id: str | None = None) -> str:
        """A new token for one agent; the secret is returned once and stored hashed. With
        `agent_id` it is bound to that existing agent (to rotate an agent's token)."""
        if not name or not name.strip():
            raise ValueError("name: expected a non-empty token name")
        if agent_id is not None and self.db.execute(
                "SELECT 1 FROM agents WHERE id=?", (agent_id,)).fetchone() is None:
            raise NotFound(f"agent: no agent {agent_id!r} has registered")
        secret = "ofa_" + secrets.token_urlsafe(32)
        try:
            with self.transaction():
                self.db.execute("INSERT INTO tokens(name, hash, created_at, agent_id) "
                                "VALUES (?,?,?,?)", (name, hash_token(secret), time.time(), agent_id))
        except sqlite3.IntegrityError:
            raise ValueError(f"name: a token named {name!r} exists already") from None
        return secret

    def revoke_token(self, name: str) -> None:
        with self.transaction():
            cur = self.db.execute("UPDATE tokens SET revoked_at=? WHERE name=? AND revoked_at IS NULL",
                                  (time.time(), name))
        if cur.rowcount == 0:
            raise NotFound(f"name: no active token named {name!r}")

    def token_by_secret(self, secret: str) -> Token | None:
        row = self.db.execute("SELECT * FROM tokens WHERE hash=?", (hash_token(secret),)).fetchone()
        if row is None:
            return None
        return Token(row["id"], row["name"], row["agent_id"], row["revoked_at"] is not None)

    def list_tokens(self) -> list[dict]:
        rows = self.db.execute("SELECT name, created_at, revoked_at, agent_id FROM tokens ORDER BY id")
        return [dict(row) for row in rows]

    # -------------------------------------------------------------------- agents
    def register_agent(self, token: Token, agent_id: str, labels: Sequence[str], device: dict,
                       threads: int, version: str,
                       offline_after_s: float = DEFAULT_OFFLINE_AFTER_S) -> str:
        """Create or refresh an agent. A token is bound to the first agent it registers.

        An agent registers only when it starts (or was forgotten), so leases it still holds
        belong to a process that died: they are expired now (counting as an attempt, in case
        the job is what killed it) instead of waiting out the lease."""
        if token.agent_id and agent_id and token.agent_id != agent_id:
            raise Forbidden(f"token {token.name!r} belongs to agent {token.agent_id}")
        agent_id = agent_id or token.agent_id or uuid.uuid4().hex[:12]
        now = time.time()
        with self.transaction():
            owner = self.db.execute("SELECT token_id FROM agents WHERE id=?", (agent_id,)).fetchone()
            if owner is not None and owner["token_id"] != token.id and token.agent_id != agent_id:
                raise Forbidden(f"agent {agent_id} is registered with another token")
            self.db.execute(
                "INSERT INTO agents(id, token_id, labels, device, threads, version, registered_at,"
                " last_seen, online, offline_after_s) VALUES (?,?,?,?,?,?,?,?,1,?)"
                " ON CONFLICT(id) DO UPDATE SET"
                " labels=excluded.labels, device=excluded.device, threads=excluded.threads,"
                " version=excluded.version, last_seen=excluded.last_seen, online=1, forgotten=0,"
                " token_id=excluded.token_id, offline_after_s=excluded.offline_after_s",
                (agent_id, token.id, _json(sorted(labels)), _json(device), threads, version, now,
                 now, offline_after_s))
            self._expire_leases(self.db.execute(
                "SELECT * FROM leases WHERE agent_id=? AND state='active'", (agent_id,)).fetchall(),
                reason="was restarted")
            self.db.execute("DELETE FROM agent_labels WHERE agent_id=?", (agent_id,))
            self.db.executemany("INSERT INTO agent_labels VALUES (?,?)",
                                [(agent_id, label) for label in sorted(set(labels))])
            self.db.execute("UPDATE tokens SET agent_id=? WHERE id=?", (agent_id, token.id))
        return agent_id

    def forget_agent(self, agent_id: str) -> None:
        """Drop an agent's registration (its history stays); it must register again."""
        with self.transaction():
            self._expire_leases(self.db.execute(
                "SELECT * FROM leases WHERE agent_id=? AND state='active'", (agent_id,)).fetchall(),
                reason="was forgotten")
            self.db.execute("DELETE FROM agent_labels WHERE agent_id=?", (agent_id,))
            cur = self.db.execute("UPDATE agents SET forgotten=1, online=0 WHERE id=?", (agent_id,))
        if cur.rowcount == 0:
            raise UnknownAgent(f"agent {agent_id!r} is not registered")

    def grant_restart_grace(self, lease_seconds: float,
                            offline_after_s: float = DEFAULT_OFFLINE_AFTER_S) -> None:
        """After a coordinator restart, give every agent a full offline window (and its
        leases a full lease) to reconnect before the sweeper judges it."""
        now = time.time()
        with self.transaction():
            self.db.execute("UPDATE agents SET last_seen=?, offline_after_s=? WHERE online=1",
                            (now, offline_after_s))
            self.db.execute("UPDATE leases SET expires_at=MAX(expires_at, ?) WHERE state='active'",
                            (now + lease_seconds,))

    def check_agent(self, agent_id: str, token: Token) -> None:
        """Raise unless `agent_id` is registered and belongs to `token`."""
        row = self.db.execute("SELECT token_id, forgotten FROM agents WHERE id=?",
                              (agent_id,)).fetchone()
        if row is None or row["forgotten"]:
            raise UnknownAgent(f"agent {agent_id!r} is not registered")
        if row["token_id"] != token.id:
            raise Forbidden(f"agent {agent_id} does not belong to token {token.name!r}")

    def heartbeat(self, agent_id: str, lease_ids: Sequence[str], telemetry: dict,
                  lease_seconds: float) -> list[str]:
        """Mark the agent alive and renew its listed leases; returns those no longer active."""
        now = time.time()
        unique = sorted(set(lease_ids))
        marks = ",".join("?" * len(unique))
        with self.transaction():
            self.db.execute("UPDATE agents SET last_seen=?, online=1, telemetry=? WHERE id=?",
                            (now, _json(telemetry), agent_id))
            # Only the listed leases: those a restarted agent no longer knows must run out,
            # or their jobs would stay leased for as long as it keeps beating.
            renewed = {r[0] for r in self.db.execute(
                f"UPDATE leases SET expires_at=? WHERE id IN ({marks}) AND agent_id=? AND "
                "state='active' RETURNING id", (now + lease_seconds, *unique, agent_id))}
        return [lease_id for lease_id in lease_ids if lease_id not in renewed]

    def agent_labels(self, agent_id: str) -> list[str]:
        return [r[0] for r in self.db.execute("SELECT label FROM agent_labels WHERE agent_id=?",
                                              (agent_id,))]

    def list_agents(self) -> list[dict]:
        """Registered agents. `online` is judged from the heartbeat's age now, not only from
        the sweeper's flag, which goes stale while no coordinator runs."""
        rows = self.db.execute("SELECT * FROM agents WHERE forgotten=0 ORDER BY registered_at")
        now = time.time()
        agents = []
        for row in rows:
            agent = dict(row)
            window = agent.pop("offline_after_s") or DEFAULT_OFFLINE_AFTER_S
            agent["online"] = int(bool(agent["online"]) and now - agent["last_seen"] <= window)
            agent["labels"] = json.loads(agent["labels"])
            agent["device"] = json.loads(agent["device"])
            agent["telemetry"] = json.loads(agent["telemetry"]) if agent["telemetry"] else None
            agents.append(agent)
        return agents

    # --------------------------------------------------------------------- blobs
    def add_blob(self, digest: str, size: int) -> None:
        with self.transaction():
            self.db.execute("INSERT OR IGNORE INTO blobs VALUES (?,?,?)", (digest, size, time.time()))

    def blob_size(self, digest: str) -> int | None:
        row = self.db.execute("SELECT size FROM blobs WHERE digest=?", (digest,)).fetchone()
        return None if row is None else row[0]

    def blob_leased_to(self, agent_id: str, digest: str) -> bool:
        """Whether the agent holds an active lease on a job that measures this blob."""
        return self.db.execute(
            "SELECT 1 FROM leases JOIN jobs ON jobs.id=leases.job_id WHERE leases.agent_id=? "
            "AND leases.state='active' AND jobs.model_digest=? LIMIT 1",
            (agent_id, digest)).fetchone() is not None

    def job_spec(self, job_id: str) -> bytes:
        """The serialised BenchSpec of a job (to check a report against its settings)."""
        row = self.db.execute("SELECT spec FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job_id: no job {job_id[:80]!r}")
        return row[0]

    # ---------------------------------------------------------------------- jobs
    def enqueue(self, specs: Iterable[tuple[bytes, str]], *, label: str | None = None,
                agent_id: str | None = None, max_attempts: int = 3, priority: int = 0,
                campaign: str | None = None) -> list[str]:
        """Queue jobs (spec bytes, model digest) for a device label or one agent, served in
        the order given. Every digest must already be a stored blob."""
        if (label is None) == (agent_id is None):
            raise ValueError("target: give exactly one of label or agent_id")
        if max_attempts < 1:
            raise ValueError(f"max_attempts: expected >= 1, got {max_attempts}")
        specs = list(specs)
        ids = [uuid.uuid4().hex for _ in specs]  # made before the write lock is taken
        now = time.time()
        with self.transaction():
            for digest in {digest for _, digest in specs}:  # per model, not per job
                if self.blob_size(digest) is None:
                    raise NotFound(f"model_digest: no blob {digest}; add the model first")
            seq = self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()[0]
            self.db.executemany(
                "INSERT INTO jobs(id, target_label, target_agent, spec, model_digest, state,"
                " max_attempts, priority, seq, campaign, created_at)"
                " VALUES (?,?,?,?,?,'queued',?,?,?,?,?)",
                ((job_id, label, agent_id, spec, digest, max_attempts, priority, seq + i,
                  campaign, now) for i, (job_id, (spec, digest)) in enumerate(zip(ids, specs), 1)))
        return ids

    def active_leases(self, agent_id: str) -> int:
        return self.db.execute("SELECT COUNT(*) FROM leases WHERE agent_id=? AND state='active'",
                               (agent_id,)).fetchone()[0]

    def lease_jobs(self, agent_id: str, max_jobs: int, lease_seconds: float,
                   check_spec: Callable[[bytes], object] = lambda spec: spec) -> list[LeasedJob]:
        """Lease up to `max_jobs` queued jobs meant for this agent or one of its labels.
        A job whose spec `check_spec` refuses (ValueError) is failed with that reason in the
        same transaction, never committed as leased to an agent it cannot reach."""
        labels = self.agent_labels(agent_id)
        # one indexed sub-query per target (an OR across them would scan the whole queue)
        pick = ("SELECT * FROM (SELECT id, spec, attempts, priority, seq, campaign FROM jobs "
                "WHERE state='queued' AND {} = ? ORDER BY priority DESC, seq LIMIT ?)")
        query = " UNION ALL ".join([pick.format("target_agent")] +
                                   [pick.format("target_label")] * len(labels))
        params = [value for target in (agent_id, *labels) for value in (target, max_jobs)]
        now = time.time()
        leased = []
        with self.transaction():
            rows = self.db.execute(f"{query} ORDER BY priority DESC, seq LIMIT ?",
                                   (*params, max_jobs)).fetchall()
            for row in rows:
                try:
                    check_spec(row["spec"])
                except ValueError as exc:
                    self.db.execute("UPDATE jobs SET state='failed', finished_at=?, error=? "
                                    "WHERE id=?", (now, f"spec: {exc}"[:500], row["id"]))
                    self.close_campaign_if_finished(row["campaign"])
                    continue
                lease_id = uuid.uuid4().hex
                attempt = row["attempts"] + 1
                self.db.execute("UPDATE jobs SET state='leased', attempts=? WHERE id=?",
                                (attempt, row["id"]))
                self.db.execute("INSERT INTO leases VALUES (?,?,?,?,?,?,'active')",
                                (lease_id, row["id"], agent_id, attempt, now, now + lease_seconds))
                leased.append(LeasedJob(row["id"], lease_id, now + lease_seconds, attempt,
                                        row["spec"]))
        return leased

    def report(self, agent_id: str, job_id: str, lease_id: str, status: str,
               result: dict) -> ReportOutcome:
        """Store one lease's result (see the module contract). `status` is ok, failed or
        released; `result` holds the measurement fields (samples_ns, telemetry, ...) and
        may hold `stats`, the summary of its samples, if the caller computed it."""
        if status not in ("ok", "failed", "released"):
            raise ValueError(f"status: expected ok, failed or released, got {status!r}")
        now = time.time()
        with self.transaction():
            lease = self.db.execute("SELECT * FROM leases WHERE id=?", (lease_id,)).fetchone()
            if lease is None or lease["job_id"] != job_id:
                raise UnknownLease(f"lease_id: no lease {lease_id} for job {job_id}")
            if lease["agent_id"] != agent_id:
                raise Forbidden(f"lease {lease_id} belongs to another agent")
            previous = self.db.execute("SELECT accepted, late FROM results WHERE lease_id=?",
                                       (lease_id,)).fetchone()
            if previous is not None:
                return ReportOutcome(bool(previous["accepted"]), True, bool(previous["late"]))
            job = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            active = lease["state"] == "active"
            late = not active or now > lease["expires_at"]
            finished = job["state"] in TERMINAL
            # A failure counts only from the lease in force: once expired, the job was (or,
            # before the next sweep, is now) requeued, and the next lease's outcome decides.
            accepted = not finished and (status == "ok" or (status == "failed" and not late))
            result_id = self._insert_result(job_id, lease_id, agent_id, status, result,
                                            accepted, late, now)
            self.db.execute("UPDATE leases SET state=? WHERE id=?",
                            ("released" if status == "released" else "reported", lease_id))
            if finished:
                pass
            elif status == "ok":
                self.db.execute("UPDATE jobs SET state='done', finished_at=?, accepted_result=?, "
                                "error=NULL WHERE id=?", (now, result_id, job_id))
                self.db.execute("UPDATE leases SET state='superseded' WHERE job_id=? AND "
                                "state='active'", (job_id,))
                self.db.execute("UPDATE agents SET jobs_done=jobs_done+1 WHERE id=?", (agent_id,))
            elif status == "released" and active:
                self.db.execute("UPDATE jobs SET state='queued', attempts=attempts-1 WHERE id=?",
                                (job_id,))
            elif status == "failed" and active:
                self._retry_or_fail(job, f"attempt {lease['attempt']} failed on agent "
                                         f"{agent_id}: {result.get('message', '')}")
            self.close_campaign_if_finished(job["campaign"])
        return ReportOutcome(accepted, False, late)

    def _insert_result(self, job_id: str, lease_id: str, agent_id: str, status: str,
                       result: dict, accepted: bool, late: bool, now: float) -> int:
        samples = np.asarray(result.get("samples_ns", []), dtype="<i8")
        stats = result.get("stats")  # the server computes it off the store's thread
        if stats is None:
            stats = summarize(samples) if samples.size else {}
        drift = result.get("drift")
        cur = self.db.execute(
            "INSERT INTO results(job_id, lease_id, agent_id, status, message, samples, n,"
            " median_ms, mean_ms, std_ms, p10_ms, p90_ms, p99_ms, cv, session_create_ns,"
            " first_run_ns, warmup_runs, warmup_ns, stop_reason, peak_rss_bytes,"
            " telemetry_before, telemetry_after, runtime_versions, drift, drift_check,"
            " lease_to_report_ns, accepted, late, received_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (job_id, lease_id, agent_id, status, result.get("message", ""), samples.tobytes(),
             int(samples.size), stats.get("median_ms"), stats.get("mean_ms"),
             stats.get("std_ms"), stats.get("p10_ms"), stats.get("p90_ms"), stats.get("p99_ms"),
             stats.get("cv"), result.get("session_create_ns"), result.get("first_run_ns"),
             result.get("warmup_runs"), result.get("warmup_ns"), result.get("stop_reason"),
             result.get("peak_rss_bytes"), _json(result.get("before", {})),
             _json(result.get("after", {})), _json(result.get("runtime_versions", {})),
             drift.get("drift") if drift else None, _json(drift) if drift else None,
             result.get("lease_to_report_ns"), int(accepted), int(late), now))
        return cur.lastrowid

    def _retry_or_fail(self, job: sqlite3.Row, reason: str) -> None:
        if job["attempts"] >= job["max_attempts"]:
            self.db.execute("UPDATE jobs SET state='failed', finished_at=?, error=? WHERE id=?",
                            (time.time(), f"{reason} (attempt {job['attempts']} of "
                                          f"{job['max_attempts']})", job["id"]))
            self.close_campaign_if_finished(job["campaign"])
        else:
            self.db.execute("UPDATE jobs SET state='queued', error=? WHERE id=?",
                            (reason, job["id"]))

    def close_campaign_if_finished(self, campaign_id: str | None) -> None:
        """A running campaign is done in the transaction that finishes its last job, so it
        never waits for someone to read its status."""
        if campaign_id is None:
            return
        with self.transaction():
            self.db.execute(
                "UPDATE campaigns SET state='done', finished_at=? WHERE id=? AND state='running' "
                "AND NOT EXISTS (SELECT 1 FROM jobs WHERE campaign=? AND state IN "
                "('queued','leased'))", (time.time(), campaign_id, campaign_id))

    def give_back(self, lease_ids: Sequence[str]) -> int:
        """Undo active leases that never reached their agent (its call was cancelled while
        they were committed): the jobs are queued again and the attempts not counted."""
        given = 0
        with self.transaction():
            for lease_id in lease_ids:
                lease = self.db.execute("SELECT job_id FROM leases WHERE id=? AND state='active'",
                                        (lease_id,)).fetchone()
                if lease is None:
                    continue
                self.db.execute("UPDATE leases SET state='released' WHERE id=?", (lease_id,))
                self.db.execute("UPDATE jobs SET state='queued', attempts=attempts-1 WHERE id=? "
                                "AND state='leased'", (lease["job_id"],))
                given += 1
        return given

    def _expire_leases(self, leases: Sequence[sqlite3.Row], reason: str) -> int:
        for lease in leases:
            self.db.execute("UPDATE leases SET state='expired' WHERE id=?", (lease["id"],))
            job = self.db.execute("SELECT * FROM jobs WHERE id=?", (lease["job_id"],)).fetchone()
            if job["state"] == "leased":
                self._retry_or_fail(job, f"lease {lease['id'][:8]} on agent {lease['agent_id']} "
                                         f"{reason}")
        return len(leases)

    def sweep(self, offline_after_s: float) -> dict[str, int]:
        """Expire overdue leases and mark silent agents offline (requeueing their leases)."""
        now = time.time()
        with self.transaction():
            overdue = self.db.execute("SELECT * FROM leases WHERE state='active' AND expires_at<?",
                                      (now,)).fetchall()
            expired = self._expire_leases(overdue, "expired")
            silent = [r["id"] for r in self.db.execute(
                "SELECT id FROM agents WHERE online=1 AND last_seen<?", (now - offline_after_s,))]
            released = 0
            for agent_id in silent:
                self.db.execute("UPDATE agents SET online=0 WHERE id=?", (agent_id,))
                released += self._expire_leases(self.db.execute(
                    "SELECT * FROM leases WHERE agent_id=? AND state='active'",
                    (agent_id,)).fetchall(), "went offline")
        return {"expired": expired, "offline": len(silent), "requeued_from_offline": released}

    def cancel_jobs(self, job_ids: Sequence[str]) -> int:
        with self.transaction():
            cancelled = 0
            for job_id in job_ids:
                cur = self.db.execute("UPDATE jobs SET state='cancelled', finished_at=? WHERE "
                                      "id=? AND state IN ('queued','leased')", (time.time(), job_id))
                cancelled += cur.rowcount
                self.db.execute("UPDATE leases SET state='superseded' WHERE job_id=? AND "
                                "state='active'", (job_id,))
        return cancelled

    # ------------------------------------------------------------------- queries
    def job(self, job_id: str) -> dict:
        row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job_id: no job {job_id}")
        return dict(row)

    def job_counts(self, campaign: str | None = None) -> dict[str, int]:
        query = "SELECT state, COUNT(*) FROM jobs"
        rows = (self.db.execute(query + " WHERE campaign=? GROUP BY state", (campaign,))
                if campaign else self.db.execute(query + " GROUP BY state"))
        return {state: count for state, count in rows}

    def results(self, job_id: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM results WHERE job_id=? ORDER BY id", (job_id,))
        out = []
        for row in rows:
            result = dict(row)
            result["samples_ns"] = np.frombuffer(result.pop("samples") or b"", dtype="<i8").tolist()
            out.append(result)
        return out


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on error (the connection is in autocommit).
    Inside an open transaction it does nothing, so store methods compose."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db
        self.outermost = False

    def __enter__(self) -> None:
        if not self.db.in_transaction:
            self.db.execute("BEGIN IMMEDIATE")
            self.outermost = True

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self.outermost:
            return
        if exc_type is not None:
            self.db.execute("ROLLBACK")
            return
        try:
            self.db.execute("COMMIT")
        except sqlite3.Error:
            if self.db.in_transaction:  # never leave the shared connection mid-transaction
                self.db.execute("ROLLBACK")
            raise
