"""The coordinator's state: tokens, agents, jobs, leases, results, blob index, campaigns,
the artifact cache and imported measurements, on either backend (`backend.py`: an SQLite
file, or a PostgreSQL database several coordinators share). The schema and its migrations
are in `schema.py`.

Contract (what callers may rely on):
- Every method is one transaction; a crash leaves the database as before or after it.
  Reads of several queries see one snapshot; `campaign_results` streams one snapshot.
- A job is `queued`, `leased`, `done`, `failed`, `disturbed` or `cancelled`. Leasing moves
  it to `leased` with a new lease (attempt = leases issued so far). Expiry or an agent going
  offline requeues it, or fails it with the reason once `max_attempts` leases have been issued.
- A disturbed result (measured while something competed) is kept as evidence, never
  accepted, and does not count as an attempt: the job is queued again, leasable only after a
  cooldown that doubles with each disturbed result, and ends `disturbed` after
  `max_disturbed` of them.
- Reports are idempotent by lease id. Exactly one OK result is accepted per job; results
  for a job that is already finished are stored with `accepted = 0`, and results of a lease
  that was no longer active are flagged `late = 1`.
- Statistics are computed from the raw samples, which are stored as int64 little-endian.
- A campaign is `created`, `starting` (its jobs being queued, a chunk per transaction),
  `running`, `done` or `cancelled`. It is done in the transaction that finishes its last
  job (a report, an expiry, a spec refused at lease, a cancelled job, or its start when its
  agents were that quick), and cancelled, with its queued and leased jobs, in one.
- Campaign names are unique.
- A quarantined agent keeps leasing and reporting, but its results are left out of the
  reads that build latency tables (`item_results`, `campaign_results`) and out of the
  peers other agents are compared with (`peer_ratios`), until it is readmitted.
- A token that names labels lets its agent register only those (Forbidden otherwise); one
  without (every token from before schema 6) lets it register any.
- An import of measurements is stored whole or not at all; one file (by sha256) is imported
  once per label and target.
- Any number of stores (processes, coordinators) may share one database: writes are
  serial, and a job is leased to one agent at a time whichever store leases it.
"""

from __future__ import annotations

import hashlib
import json
import math
import secrets
import statistics
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from agent.stats import summarize
from coordinator.state.backend import Backend, Mode, Transaction, open_backend
from coordinator.state.errors import Forbidden, NotFound, UnknownAgent, UnknownLease
from coordinator.state.rows import (
    CAMPAIGN_RESULT_KEYS,
    JSON_RESULT_FIELDS,
    LABEL,
    REPORTED_AS_IS,
    RESULT_FIELDS,
    TERMINAL,
    AgentError,
    Artifact,
    Campaign,
    CampaignItem,
    CampaignProgress,
    CurrentLease,
    Devices,
    Imported,
    ImportedLine,
    ItemJobs,
    ItemResult,
    LabelQueue,
    LeasedJob,
    PeerRatio,
    ReportOutcome,
    ResultTiming,
    Token,
)
from coordinator.state.schema import migrate

__all__ = [
    "Store",
    "hash_token",
    "DEFAULT_OFFLINE_AFTER_S",
    "REPORT_STATUSES",
    "FILES_BESIDE_SQLITE",
]

# What an agent may report for a lease (see `Store.report`).
REPORT_STATUSES = ("ok", "failed", "released", "disturbed")

# How long an agent may stay silent before listings call it offline when no server has told
# the store its own window (FleetSettings' default: 3 heartbeats of 5 s).
DEFAULT_OFFLINE_AFTER_S = 15.0
FILES_BESIDE_SQLITE = (
    "--files: an SQLite fleet keeps its files beside its database; --files is for a PostgreSQL one"
)
# The campaign states in which its jobs may still be queued or leased.
_OPEN_CAMPAIGN = ("created", "starting", "running")


def hash_token(secret: str) -> str:
    """Tokens are stored only as their sha256."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _samples(blob: bytes | None) -> np.ndarray:
    return np.frombuffer(blob or b"", dtype="<i8")


# A campaign's jobs with the items they measure, and their results with both: the one place
# these joins are written.
_ITEM_OF_JOB = "JOIN campaign_items ci ON ci.campaign_id=cj.campaign_id AND ci.item=cj.item"
_ITEM_JOBS = f"campaign_jobs cj {_ITEM_OF_JOB}"
_ITEM_RESULTS = f"results res JOIN campaign_jobs cj ON cj.job_id=res.job_id {_ITEM_OF_JOB}"
# Results a latency table may use: not of a quarantined agent.
_TRUSTED = "res.agent_id NOT IN (SELECT id FROM agents WHERE quarantined_at IS NOT NULL)"


def _item_filter(target: Devices, kind: str, campaign_ids: Sequence[str]) -> tuple[str, list[Any]]:
    """The WHERE clause (on _ITEM_JOBS) for a target's items of one kind, of some campaigns
    (or any, when none are given)."""
    where, params = "cj.target=? AND ci.kind=?", [target.name, kind]
    if campaign_ids:
        where += f" AND cj.campaign_id IN ({','.join('?' * len(campaign_ids))})"
        params += list(campaign_ids)
    return where, params


class Store:
    def __init__(self, location: str | Path) -> None:
        """Open (or create, when missing) a fleet database: an SQLite file at a path, or a
        PostgreSQL database at a postgresql:// URL. Anything that is not one raises
        NotAFleetDatabase before anything is written to it."""
        self.backend: Backend = open_backend(location)
        self.db = self.backend.db
        self.location = self.backend.location
        try:
            migrate(self.backend)
            self.backend.ready()
        except BaseException:
            self.backend.close()
            raise

    def close(self) -> None:
        self.backend.close()

    def transaction(self, mode: Mode = "write") -> Transaction:
        """One transaction; methods called inside it join it instead of opening their own."""
        return self.backend.transaction(mode)

    def _snapshot(self) -> Transaction:
        """A read transaction: several queries see one state, without the write lock."""
        return self.backend.transaction("read")

    def data_version(self) -> int:
        """Changes when another connection (another process) commits."""
        return self.backend.data_version()

    # ------------------------------------------------------------ the fleet's files
    def files_root(self) -> Path | None:
        """The folder a fleet without a folder beside its database (PostgreSQL) keeps its
        files in (model blobs, predictors), as `set_files_root` recorded it; or None."""
        row = self.db.execute("SELECT value FROM settings WHERE name='files'").fetchone()
        return None if row is None else Path(row[0])

    def set_files_root(self, root: Path) -> Path:
        """Record the files folder for every coordinator and command of this fleet, unless
        one is recorded already; returns the recorded one (two coordinators starting at
        once with different folders: the first wins, the other sees it)."""
        if self.backend.folder_beside("blobs") is not None:
            raise ValueError(FILES_BESIDE_SQLITE)
        with self.transaction():
            self.db.execute(
                "INSERT INTO settings VALUES ('files', ?) ON CONFLICT (name) DO NOTHING",
                (str(root.resolve()),),
            )
            recorded = self.files_root()
        assert recorded is not None  # inserted, or there before
        return recorded

    def folder(self, kind: str) -> Path:
        """Where the fleet keeps one kind of file ("blobs", "predictors"): beside an SQLite
        database, else in the files folder the fleet recorded. NotFound when neither."""
        beside = self.backend.folder_beside(kind)
        if beside is not None:
            return beside
        recorded = self.files_root()
        if recorded is None:
            raise NotFound(
                "files: this fleet has no folder for its files yet; start its first "
                "coordinator with --files DIR, a folder every coordinator and command reaches"
            )
        return recorded / kind

    # -------------------------------------------------------------------- tokens
    def create_token(
        self, name: str, agent_id: str | None = None, labels: Sequence[str] | None = None
    ) -> str:
        """A new token for one agent; the secret is returned once and stored hashed. With
        `agent_id` it is bound to that existing agent (to rotate an agent's token). With
        `labels` its agent may register only those labels; None lets it serve any."""
        if not name or not name.strip():
            raise ValueError("name: expected a non-empty token name")
        if labels is not None:
            labels = sorted(set(labels))
            if not labels:
                raise ValueError("labels: expected at least one label, or None for any label")
            for label in labels:
                if not isinstance(label, str) or not LABEL.fullmatch(label):
                    raise ValueError(
                        f"label: expected 1-64 characters of A-Z a-z 0-9 . _ -, got {label!r}"
                    )
        if (
            agent_id is not None
            and self.db.execute("SELECT 1 FROM agents WHERE id=?", (agent_id,)).fetchone() is None
        ):
            raise NotFound(f"agent: no agent {agent_id!r} has registered")
        secret = "ofa_" + secrets.token_urlsafe(32)
        try:
            with self.transaction():
                self.db.execute(
                    "INSERT INTO tokens(name, hash, created_at, agent_id, labels) "
                    "VALUES (?,?,?,?,?)",
                    (
                        name,
                        hash_token(secret),
                        time.time(),
                        agent_id,
                        None if labels is None else _json(labels),
                    ),
                )
        except self.backend.integrity_error:
            raise ValueError(f"name: a token named {name!r} exists already") from None
        return secret

    def revoke_token(self, name: str) -> None:
        with self.transaction():
            cur = self.db.execute(
                "UPDATE tokens SET revoked_at=? WHERE name=? AND revoked_at IS NULL",
                (time.time(), name),
            )
        if cur.rowcount == 0:
            raise NotFound(f"name: no active token named {name!r}")

    def token_by_secret(self, secret: str) -> Token | None:
        row = self.db.execute("SELECT * FROM tokens WHERE hash=?", (hash_token(secret),)).fetchone()
        if row is None:
            return None
        labels = None if row["labels"] is None else tuple(json.loads(row["labels"]))
        return Token(row["id"], row["name"], row["agent_id"], row["revoked_at"] is not None, labels)

    def list_tokens(self) -> list[dict]:
        """Every token (never its hash); `labels` is the list it may serve, None for any."""
        rows = self.db.execute(
            "SELECT name, created_at, revoked_at, agent_id, labels FROM tokens ORDER BY id"
        )
        return [
            {**row, "labels": None if row["labels"] is None else json.loads(row["labels"])}
            for row in rows
        ]

    # -------------------------------------------------------------------- agents
    def register_agent(
        self,
        token: Token,
        agent_id: str,
        labels: Sequence[str],
        device: dict,
        threads: int,
        version: str,
        offline_after_s: float = DEFAULT_OFFLINE_AFTER_S,
    ) -> str:
        """Create or refresh an agent. A token is bound to the first agent it registers,
        and lets it register only the labels the token allows.

        An agent registers only when it starts (or was forgotten), so leases it still holds
        belong to a process that died: they are expired now (counting as an attempt, in case
        the job is what killed it) instead of waiting out the lease."""
        if token.agent_id and agent_id and token.agent_id != agent_id:
            raise Forbidden(f"token {token.name!r} belongs to agent {token.agent_id}")
        refused = sorted(set(labels) - set(token.labels or labels))
        if refused:
            raise Forbidden(
                f"labels: token {token.name!r} may not serve {', '.join(refused)} "
                f"(it allows {', '.join(token.labels or ())})"
            )
        agent_id = agent_id or token.agent_id or uuid.uuid4().hex[:12]
        now = time.time()
        with self.transaction():
            owner = self.db.execute(
                "SELECT token_id FROM agents WHERE id=?", (agent_id,)
            ).fetchone()
            if owner is not None and owner["token_id"] != token.id and token.agent_id != agent_id:
                raise Forbidden(f"agent {agent_id} is registered with another token")
            self.db.execute(
                "INSERT INTO agents(id, token_id, labels, device, threads, version, registered_at,"
                " last_seen, online, offline_after_s) VALUES (?,?,?,?,?,?,?,?,1,?)"
                " ON CONFLICT(id) DO UPDATE SET"
                " labels=excluded.labels, device=excluded.device, threads=excluded.threads,"
                " version=excluded.version, last_seen=excluded.last_seen, online=1, forgotten=0,"
                " token_id=excluded.token_id, offline_after_s=excluded.offline_after_s",
                (
                    agent_id,
                    token.id,
                    _json(sorted(labels)),
                    _json(device),
                    threads,
                    version,
                    now,
                    now,
                    offline_after_s,
                ),
            )
            self._expire_leases(
                self.db.execute(
                    "SELECT * FROM leases WHERE agent_id=? AND state='active'", (agent_id,)
                ).fetchall(),
                reason="was restarted",
            )
            self.db.execute("DELETE FROM agent_labels WHERE agent_id=?", (agent_id,))
            self.db.executemany(
                "INSERT INTO agent_labels VALUES (?,?)",
                [(agent_id, label) for label in sorted(set(labels))],
            )
            self.db.execute("UPDATE tokens SET agent_id=? WHERE id=?", (agent_id, token.id))
        return agent_id

    def forget_agent(self, agent_id: str) -> None:
        """Drop an agent's registration (its history stays); it must register again."""
        with self.transaction():
            self._expire_leases(
                self.db.execute(
                    "SELECT * FROM leases WHERE agent_id=? AND state='active'", (agent_id,)
                ).fetchall(),
                reason="was forgotten",
            )
            self.db.execute("DELETE FROM agent_labels WHERE agent_id=?", (agent_id,))
            cur = self.db.execute("UPDATE agents SET forgotten=1, online=0 WHERE id=?", (agent_id,))
        if cur.rowcount == 0:
            raise UnknownAgent(f"agent {agent_id!r} is not registered")

    def grant_restart_grace(
        self, lease_seconds: float, offline_after_s: float = DEFAULT_OFFLINE_AFTER_S
    ) -> None:
        """After a coordinator restart, give every agent a full offline window (and its
        leases a full lease) to reconnect before the sweeper judges it."""
        now = time.time()
        with self.transaction():
            self.db.execute(
                "UPDATE agents SET last_seen=?, offline_after_s=? WHERE online=1",
                (now, offline_after_s),
            )
            self.db.execute(
                "UPDATE leases SET expires_at=CASE WHEN expires_at > ? THEN expires_at ELSE ? END "
                "WHERE state='active'",
                (now + lease_seconds, now + lease_seconds),
            )

    def check_agent(self, agent_id: str, token: Token) -> None:
        """Raise unless `agent_id` is registered and belongs to `token`."""
        row = self.db.execute(
            "SELECT token_id, forgotten FROM agents WHERE id=?", (agent_id,)
        ).fetchone()
        if row is None or row["forgotten"]:
            raise UnknownAgent(f"agent {agent_id!r} is not registered")
        if row["token_id"] != token.id:
            raise Forbidden(f"agent {agent_id} does not belong to token {token.name!r}")

    def heartbeat(
        self, agent_id: str, lease_ids: Sequence[str], telemetry: dict, lease_seconds: float
    ) -> list[str]:
        """Mark the agent alive and renew its listed leases; returns those no longer active."""
        now = time.time()
        unique = sorted(set(lease_ids))
        marks = ",".join("?" * len(unique))
        with self.transaction():
            self.db.execute(
                "UPDATE agents SET last_seen=?, online=1, telemetry=? WHERE id=?",
                (now, _json(telemetry), agent_id),
            )
            # Only the listed leases: those a restarted agent no longer knows must run out,
            # or their jobs would stay leased for as long as it keeps beating.
            renewed = (
                {
                    r[0]
                    for r in self.db.execute(
                        f"UPDATE leases SET expires_at=? WHERE id IN ({marks}) AND agent_id=? AND "
                        "state='active' RETURNING id",
                        (now + lease_seconds, *unique, agent_id),
                    )
                }
                if unique
                else set()
            )
        return [lease_id for lease_id in lease_ids if lease_id not in renewed]

    def agent_labels(self, agent_id: str) -> list[str]:
        return [
            r[0]
            for r in self.db.execute("SELECT label FROM agent_labels WHERE agent_id=?", (agent_id,))
        ]

    def list_agents(self) -> list[dict]:
        """Registered agents. `online` is judged from the heartbeat's age now, not only from
        the sweeper's flag, which goes stale while no coordinator runs. `quarantine` is
        None, or since when (`at`), why and at what peer ratio the agent is quarantined."""
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
            quarantine = {
                "at": agent.pop("quarantined_at"),
                "reason": agent.pop("quarantine_reason"),
                "ratio": agent.pop("quarantine_ratio"),
            }
            agent["quarantine"] = quarantine if quarantine["at"] is not None else None
            agents.append(agent)
        return agents

    # ---------------------------------------------------------------- quarantine
    def peer_ratios(self, label: str) -> list[PeerRatio]:
        """Each agent that has an accepted OK result of a job for `label`, compared with its
        peers: for every model (job digest and spec, the same settings) that it and
        unquarantined others measured, its median_ms (the median of its results of that
        model) over the median of theirs; the agent's ratio is the median of those, and its
        ratio to each peer the median over the models they share. A readmitted agent is
        compared on its results since then (its old ones would quarantine it again)."""
        with self._snapshot():
            rows = self.db.execute(
                "SELECT res.agent_id, j.model_digest, j.spec, res.median_ms, "
                "a.quarantined_at IS NOT NULL AS quarantined FROM results res "
                "JOIN jobs j ON j.id=res.job_id JOIN agents a ON a.id=res.agent_id "
                "WHERE j.target_label=? AND res.accepted=1 AND res.status='ok' "
                "AND res.median_ms > 0 "
                "AND (a.readmitted_at IS NULL OR res.received_at >= a.readmitted_at)",
                (label,),
            ).fetchall()
        measured: dict[tuple[str, bytes], dict[str, list[float]]] = {}
        quarantined = set()
        for row in rows:
            results = measured.setdefault((row["model_digest"], row["spec"]), {})
            results.setdefault(row["agent_id"], []).append(row["median_ms"])
            if row["quarantined"]:
                quarantined.add(row["agent_id"])
        models = [
            {agent: statistics.median(values) for agent, values in by_agent.items()}
            for by_agent in measured.values()
        ]
        out = []
        for agent in sorted({row["agent_id"] for row in rows}):
            ratios: list[float] = []
            pairs: dict[str, list[float]] = {}
            for medians in models:
                others = [a for a in medians if a != agent and a not in quarantined]
                if agent not in medians or not others:
                    continue
                ratios.append(medians[agent] / statistics.median(medians[a] for a in others))
                for other in others:
                    pairs.setdefault(other, []).append(medians[agent] / medians[other])
            out.append(
                PeerRatio(
                    agent,
                    statistics.median(ratios) if ratios else None,
                    len(ratios),
                    {peer: statistics.median(each) for peer, each in sorted(pairs.items())},
                    agent in quarantined,
                )
            )
        return out

    def quarantine_agent(self, agent_id: str, reason: str, ratio: float) -> None:
        """Leave the agent's results out of latency tables until it is readmitted."""
        with self.transaction():
            self.db.execute(
                "UPDATE agents SET quarantined_at=?, quarantine_reason=?, quarantine_ratio=? "
                "WHERE id=? AND quarantined_at IS NULL",
                (time.time(), reason, ratio, agent_id),
            )

    def readmit_agent(self, agent_id: str) -> bool:
        """Clear the agent's quarantine; whether it was quarantined. From now on its peers
        compare it on new results only. NotFound for an agent that never registered."""
        with self.transaction():
            row = self.db.execute(
                "SELECT quarantined_at FROM agents WHERE id=?", (agent_id,)
            ).fetchone()
            if row is None:
                raise NotFound(f"agent_id: no agent {agent_id!r} has registered")
            self.db.execute(
                "UPDATE agents SET quarantined_at=NULL, quarantine_reason=NULL, "
                "quarantine_ratio=NULL, readmitted_at=? WHERE id=? AND quarantined_at IS NOT NULL",
                (time.time(), agent_id),
            )
        return row["quarantined_at"] is not None

    # --------------------------------------------------------------------- blobs
    def add_blob(self, digest: str, size: int) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO blobs VALUES (?,?,?) ON CONFLICT DO NOTHING",
                (digest, size, time.time()),
            )

    def blob_size(self, digest: str) -> int | None:
        row = self.db.execute("SELECT size FROM blobs WHERE digest=?", (digest,)).fetchone()
        return None if row is None else row[0]

    def blob_leased_to(self, agent_id: str, digest: str) -> bool:
        """Whether the agent holds an active lease on a job that measures this blob."""
        return (
            self.db.execute(
                "SELECT 1 FROM leases JOIN jobs ON jobs.id=leases.job_id WHERE leases.agent_id=? "
                "AND leases.state='active' AND jobs.model_digest=? LIMIT 1",
                (agent_id, digest),
            ).fetchone()
            is not None
        )

    def job_spec(self, job_id: str) -> bytes:
        """The serialised BenchSpec of a job (to check a report against its settings)."""
        row = self.db.execute("SELECT spec FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job_id: no job {job_id[:80]!r}")
        return row[0]

    # ---------------------------------------------------------------------- jobs
    def enqueue(
        self,
        specs: Iterable[tuple[bytes, str]],
        *,
        label: str | None = None,
        agent_id: str | None = None,
        max_attempts: int = 3,
        max_disturbed: int = 4,
        priority: int = 0,
        campaign: str | None = None,
    ) -> list[str]:
        """Queue jobs (spec bytes, model digest) for a device label or one agent, served in
        the order given. Every digest must already be a stored blob."""
        if (label is None) == (agent_id is None):
            raise ValueError("target: give exactly one of label or agent_id")
        for name, value in (("max_attempts", max_attempts), ("max_disturbed", max_disturbed)):
            if value < 1:
                raise ValueError(f"{name}: expected >= 1, got {value}")
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
                " max_attempts, max_disturbed, priority, seq, campaign, created_at)"
                " VALUES (?,?,?,?,?,'queued',?,?,?,?,?,?)",
                (
                    (
                        job_id,
                        label,
                        agent_id,
                        spec,
                        digest,
                        max_attempts,
                        max_disturbed,
                        priority,
                        seq + i,
                        campaign,
                        now,
                    )
                    for i, (job_id, (spec, digest)) in enumerate(zip(ids, specs, strict=True), 1)
                ),
            )
        return ids

    def active_leases(self, agent_id: str) -> int:
        return self.db.execute(
            "SELECT COUNT(*) FROM leases WHERE agent_id=? AND state='active'", (agent_id,)
        ).fetchone()[0]

    def lease_jobs(
        self,
        agent_id: str,
        max_jobs: int,
        lease_seconds: float,
        check_spec: Callable[[bytes], object] = lambda spec: spec,
    ) -> list[LeasedJob]:
        """Lease up to `max_jobs` queued jobs meant for this agent or one of its labels.
        A job whose spec `check_spec` refuses (ValueError) is failed with that reason in the
        same transaction, never committed as leased to an agent it cannot reach."""
        targets = [("target_agent", agent_id)]
        targets += [("target_label", label) for label in self.agent_labels(agent_id)]
        leased = self._lease(targets, agent_id, max_jobs, lease_seconds, check_spec, "rows")
        if leased is None:  # failing a job may finish its campaign: a write, in the writers' order
            leased = self._lease(targets, agent_id, max_jobs, lease_seconds, check_spec, "write")
        assert leased is not None  # a "write" lease always ends
        return leased

    def _lease(
        self,
        targets: Sequence[tuple[str, str]],
        agent_id: str,
        max_jobs: int,
        lease_seconds: float,
        check_spec: Callable[[bytes], object],
        mode: Mode,
    ) -> list[LeasedJob] | None:
        """Lease in one transaction; None, changing nothing, when a job is to be failed and
        this "rows" transaction runs beside other writes."""
        now = time.time()
        with self.transaction(mode):
            rows = []
            for column, value in targets:  # one indexed query each: an OR would scan the queue
                rows += self.db.execute(
                    "SELECT id, spec, attempts, priority, seq, campaign FROM jobs "
                    f"WHERE state='queued' AND {column}=? AND not_before<=? "
                    f"ORDER BY priority DESC, seq LIMIT ?{self.backend.lock_rows}",
                    (value, now, max_jobs),
                ).fetchall()
            rows = sorted(rows, key=lambda row: (-row["priority"], row["seq"]))[:max_jobs]
            refused = {}
            for row in rows:
                try:
                    check_spec(row["spec"])
                except ValueError as exc:
                    refused[row["id"]] = exc
            if refused and mode == "rows" and self.backend.lock_rows:
                return None
            leased = []
            for row in rows:
                if row["id"] in refused:
                    self.db.execute(
                        "UPDATE jobs SET state='failed', finished_at=?, error=? WHERE id=?",
                        (now, f"spec: {refused[row['id']]}"[:500], row["id"]),
                    )
                    self.close_campaign_if_finished(row["campaign"])
                    continue
                lease_id = uuid.uuid4().hex
                attempt = row["attempts"] + 1
                self.db.execute(
                    "UPDATE jobs SET state='leased', attempts=? WHERE id=?", (attempt, row["id"])
                )
                self.db.execute(
                    "INSERT INTO leases VALUES (?,?,?,?,?,?,'active')",
                    (lease_id, row["id"], agent_id, attempt, now, now + lease_seconds),
                )
                leased.append(
                    LeasedJob(row["id"], lease_id, now + lease_seconds, attempt, row["spec"])
                )
        return leased

    def report(
        self,
        agent_id: str,
        job_id: str,
        lease_id: str,
        status: str,
        result: dict,
        cooldown_s: float = 0.0,
    ) -> ReportOutcome:
        """Store one lease's result (see the module contract). `status` is ok, failed,
        released or disturbed; `result` holds the measurement fields (samples_ns, telemetry,
        evidence, ...) and may hold `stats`, the summary of its samples, if the caller
        computed it. A disturbed job may be leased again `cooldown_s` x 2^(n-1) seconds after
        its n-th disturbed result."""
        if status not in REPORT_STATUSES:
            raise ValueError(
                f"status: expected one of {', '.join(REPORT_STATUSES)}, got {status!r}"
            )
        if not 0 <= cooldown_s < math.inf:
            raise ValueError(f"cooldown_s: expected a finite number >= 0, got {cooldown_s}")
        now = time.time()
        with self.transaction():
            lease = self.db.execute("SELECT * FROM leases WHERE id=?", (lease_id,)).fetchone()
            if lease is None or lease["job_id"] != job_id:
                raise UnknownLease(f"lease_id: no lease {lease_id} for job {job_id}")
            if lease["agent_id"] != agent_id:
                raise Forbidden(f"lease {lease_id} belongs to another agent")
            previous = self.db.execute(
                "SELECT accepted, late FROM results WHERE lease_id=?", (lease_id,)
            ).fetchone()
            if previous is not None:
                return ReportOutcome(bool(previous["accepted"]), True, bool(previous["late"]))
            job = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
            active = lease["state"] == "active"
            late = not active or now > lease["expires_at"]
            finished = job["state"] in TERMINAL
            # A failure counts only from the lease in force: once expired, the job was (or,
            # before the next sweep, is now) requeued, and the next lease's outcome decides.
            accepted = not finished and (status == "ok" or (status == "failed" and not late))
            result_id = self._insert_result(
                job_id, lease_id, agent_id, status, result, accepted, late, now
            )
            self.db.execute(
                "UPDATE leases SET state=? WHERE id=?",
                ("released" if status == "released" else "reported", lease_id),
            )
            if finished:
                pass
            elif status == "ok":
                self.db.execute(
                    "UPDATE jobs SET state='done', finished_at=?, accepted_result=?, "
                    "error=NULL WHERE id=?",
                    (now, result_id, job_id),
                )
                self.db.execute(
                    "UPDATE leases SET state='superseded' WHERE job_id=? AND state='active'",
                    (job_id,),
                )
                self.db.execute("UPDATE agents SET jobs_done=jobs_done+1 WHERE id=?", (agent_id,))
            elif status == "released" and active:
                self.db.execute(
                    "UPDATE jobs SET state='queued', attempts=attempts-1 WHERE id=?", (job_id,)
                )
            elif status == "failed" and active:
                self._retry_or_fail(
                    job,
                    f"attempt {lease['attempt']} failed on agent "
                    f"{agent_id}: {result.get('message', '')}",
                )
            elif status == "disturbed" and active:
                self._remeasure(job, agent_id, result, now + cooldown_s * 2 ** job["disturbed"])
            self.close_campaign_if_finished(job["campaign"])
        return ReportOutcome(accepted, False, late)

    def _insert_result(
        self,
        job_id: str,
        lease_id: str,
        agent_id: str,
        status: str,
        result: dict,
        accepted: bool,
        late: bool,
        now: float,
    ) -> int:
        samples = np.asarray(result.get("samples_ns", []), dtype="<i8")
        stats = result.get("stats")  # the server computes it off the store's thread
        if stats is None:
            stats = summarize(samples) if samples.size else {}
        drift = result.get("drift")
        row = {
            "job_id": job_id,
            "lease_id": lease_id,
            "agent_id": agent_id,
            "status": status,
            "message": result.get("message", ""),
            "samples": samples.tobytes(),
            "n": int(samples.size),
            **{
                name: stats.get(name)
                for name in ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "p99_ms", "cv")
            },
            **{name: result.get(name) for name in REPORTED_AS_IS},
            "telemetry_before": _json(result.get("before", {})),
            "telemetry_after": _json(result.get("after", {})),
            "runtime_versions": _json(result.get("runtime_versions", {})),
            "drift": drift.get("drift") if drift else None,
            "drift_check": _json(drift) if drift else None,
            "evidence": _json(result["evidence"]) if result.get("evidence") else None,
            "conditions": _json(result["conditions"]) if result.get("conditions") else None,
            "profile": _json(result["profile"]) if result.get("profile") else None,
            "accepted": int(accepted),
            "late": int(late),
            "received_at": now,
        }
        return self.db.execute(
            f"INSERT INTO results({', '.join(row)}) VALUES ({', '.join('?' * len(row))}) "
            "RETURNING id",
            tuple(row.values()),
        ).fetchone()[0]

    def _retry_or_fail(self, job: Any, reason: str) -> None:
        if job["attempts"] >= job["max_attempts"]:
            self.db.execute(
                "UPDATE jobs SET state='failed', finished_at=?, error=? WHERE id=?",
                (
                    time.time(),
                    f"{reason} (attempt {job['attempts']} of {job['max_attempts']})",
                    job["id"],
                ),
            )
            self.close_campaign_if_finished(job["campaign"])
        else:
            self.db.execute(
                "UPDATE jobs SET state='queued', error=? WHERE id=?", (reason, job["id"])
            )

    def _remeasure(self, job: Any, agent_id: str, result: dict, not_before: float) -> None:
        """Queue a disturbed job again after its cooldown (the lease is not counted as an
        attempt), or end it `disturbed` once it has had `max_disturbed` disturbed results."""
        disturbed = job["disturbed"] + 1
        reasons = "; ".join((result.get("evidence") or {}).get("reasons", [])) or "disturbed"
        reason = f"disturbed on agent {agent_id} ({disturbed} of {job['max_disturbed']}): {reasons}"
        if disturbed >= job["max_disturbed"]:
            self.db.execute(
                "UPDATE jobs SET state='disturbed', disturbed=?, attempts=attempts-1, "
                "finished_at=?, error=? WHERE id=?",
                (disturbed, time.time(), reason[:500], job["id"]),
            )
        else:
            self.db.execute(
                "UPDATE jobs SET state='queued', disturbed=?, attempts=attempts-1, "
                "not_before=?, error=? WHERE id=?",
                (disturbed, not_before, reason[:500], job["id"]),
            )

    def close_campaign_if_finished(self, campaign_id: str | None) -> None:
        """A running campaign is done in the transaction that finishes its last job, so it
        never waits for someone to read its status."""
        if campaign_id is None:
            return
        with self.transaction():
            self.db.execute(
                "UPDATE campaigns SET state='done', finished_at=? WHERE id=? AND state='running' "
                "AND NOT EXISTS (SELECT 1 FROM jobs WHERE campaign=? AND state IN "
                "('queued','leased'))",
                (time.time(), campaign_id, campaign_id),
            )

    def give_back(self, lease_ids: Sequence[str]) -> int:
        """Undo active leases that never reached their agent (its call was cancelled while
        they were committed): the jobs are queued again and the attempts not counted."""
        given = 0
        with self.transaction():
            for lease_id in lease_ids:
                lease = self.db.execute(
                    "SELECT job_id FROM leases WHERE id=? AND state='active'", (lease_id,)
                ).fetchone()
                if lease is None:
                    continue
                self.db.execute("UPDATE leases SET state='released' WHERE id=?", (lease_id,))
                self.db.execute(
                    "UPDATE jobs SET state='queued', attempts=attempts-1 WHERE id=? "
                    "AND state='leased'",
                    (lease["job_id"],),
                )
                given += 1
        return given

    def _expire_leases(self, leases: Sequence[Any], reason: str) -> int:
        for lease in leases:
            self.db.execute("UPDATE leases SET state='expired' WHERE id=?", (lease["id"],))
            job = self.db.execute("SELECT * FROM jobs WHERE id=?", (lease["job_id"],)).fetchone()
            if job["state"] == "leased":
                self._retry_or_fail(
                    job, f"lease {lease['id'][:8]} on agent {lease['agent_id']} {reason}"
                )
        return len(leases)

    def sweep(self, offline_after_s: float) -> dict[str, int]:
        """Expire overdue leases, mark silent agents offline (requeueing their leases) and
        count the jobs whose cooldown is over."""
        now = time.time()
        with self.transaction():
            overdue = self.db.execute(
                "SELECT * FROM leases WHERE state='active' AND expires_at<?", (now,)
            ).fetchall()
            expired = self._expire_leases(overdue, "expired")
            silent = [
                r["id"]
                for r in self.db.execute(
                    "SELECT id FROM agents WHERE online=1 AND last_seen<?", (now - offline_after_s,)
                )
            ]
            released = 0
            for agent_id in silent:
                self.db.execute("UPDATE agents SET online=0 WHERE id=?", (agent_id,))
                released += self._expire_leases(
                    self.db.execute(
                        "SELECT * FROM leases WHERE agent_id=? AND state='active'", (agent_id,)
                    ).fetchall(),
                    "went offline",
                )
            # a re-measure whose cooldown is over: leasable now, and worth waking pollers for
            cooled = self.db.execute(
                "UPDATE jobs SET not_before=0 WHERE not_before>0 AND not_before<=?", (now,)
            ).rowcount
        return {
            "expired": expired,
            "offline": len(silent),
            "requeued_from_offline": released,
            "cooled": cooled,
        }

    def cancel_jobs(self, job_ids: Sequence[str]) -> int:
        """Cancel the queued and leased ones of these jobs; a running campaign whose last
        jobs they were is done."""
        with self.transaction():
            cancelled = 0
            campaigns: set[str] = set()
            for job_id in job_ids:
                rows = self.db.execute(
                    "UPDATE jobs SET state='cancelled', finished_at=? WHERE "
                    "id=? AND state IN ('queued','leased') RETURNING campaign",
                    (time.time(), job_id),
                ).fetchall()
                cancelled += len(rows)
                campaigns.update(row[0] for row in rows)
                self.db.execute(
                    "UPDATE leases SET state='superseded' WHERE job_id=? AND state='active'",
                    (job_id,),
                )
            for campaign_id in campaigns:
                self.close_campaign_if_finished(campaign_id)
        return cancelled

    # ------------------------------------------------------------------- queries
    def job(self, job_id: str) -> dict:
        row = self.db.execute("SELECT * FROM jobs WHERE id=?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"job_id: no job {job_id}")
        return dict(row)

    def job_counts(self, campaign: str | None = None) -> dict[str, int]:
        query = "SELECT state, COUNT(*) FROM jobs"
        rows = (
            self.db.execute(query + " WHERE campaign=? GROUP BY state", (campaign,))
            if campaign
            else self.db.execute(query + " GROUP BY state")
        )
        return dict(rows)

    def result_counts(self, agent_id: str | None = None) -> dict[str, int]:
        """How many results are stored and how many were accepted (of one agent, or all)."""
        query = "SELECT COUNT(*), COALESCE(SUM(accepted), 0) FROM results"
        row = (
            self.db.execute(query + " WHERE agent_id=?", (agent_id,))
            if agent_id is not None
            else self.db.execute(query)
        ).fetchone()
        return {"stored": row[0], "accepted": row[1]}

    def results(self, job_id: str) -> list[dict]:
        rows = self.db.execute("SELECT * FROM results WHERE job_id=? ORDER BY id", (job_id,))
        out = []
        for row in rows:
            result = dict(row)
            result["samples_ns"] = _samples(result.pop("samples")).tolist()
            out.append(result)
        return out

    def result_timings(self) -> list[ResultTiming]:
        """Every accepted OK result with its lease's issue time, in the order the leases
        were issued: how long each job took from lease to stored report (the agent overhead
        benchmark compares that with the time measuring)."""
        with self._snapshot():
            rows = self.db.execute(
                "SELECT l.issued_at, r.received_at, r.session_create_ns, r.warmup_ns, r.samples"
                " FROM results r JOIN leases l ON l.id=r.lease_id"
                " WHERE r.accepted=1 AND r.status='ok' ORDER BY l.issued_at, r.id"
            ).fetchall()
        return [
            ResultTiming(
                row["issued_at"],
                row["received_at"],
                row["session_create_ns"],
                row["warmup_ns"],
                _samples(row["samples"]),
            )
            for row in rows
        ]

    # ----------------------------------------------------------------- artifacts
    def cached_artifact(self, kind: str, key: str, weights: str) -> Artifact | None:
        """The model built before for this campaign item (its blob may since be gone)."""
        row = self.db.execute(
            "SELECT digest, inputs FROM artifacts WHERE kind=? AND key=? AND weights=?",
            (kind, key, weights),
        ).fetchone()
        return None if row is None else Artifact(row["digest"], json.loads(row["inputs"]))

    def cache_artifact(self, kind: str, key: str, weights: str, artifact: Artifact) -> None:
        with self.transaction():
            self.db.execute(
                "INSERT INTO artifacts VALUES (?,?,?,?,?) ON CONFLICT (kind, key, weights) "
                "DO UPDATE SET digest=excluded.digest, inputs=excluded.inputs",
                (kind, key, weights, artifact.digest, json.dumps(artifact.inputs)),
            )

    # ------------------------------------------------------- imported measurements
    def add_import(
        self,
        import_id: str,
        label: str,
        target: str,
        file: str,
        sha256: str,
        lines: Sequence[ImportedLine],
        now: float,
    ) -> None:
        """Store an import and all its lines in one transaction; ValueError when the same
        file (by sha256) was imported for this label and target before."""
        with self.transaction():
            taken = self.db.execute(
                "SELECT id, file FROM imports WHERE label=? AND target=? AND sha256=?",
                (label, target, sha256),
            ).fetchone()
            if taken is not None:
                raise ValueError(
                    f"file: already imported for {label} on this target as {taken['id']} "
                    f"(from {taken['file']})"
                )
            self.db.execute(
                "INSERT INTO imports VALUES (?,?,?,?,?,?,?)",
                (import_id, label, target, file, sha256, len(lines), now),
            )
            self.db.executemany(
                "INSERT INTO imported VALUES (?,?,?,?,?)",
                [(import_id, x.line, x.key, x.latency_ms, x.metadata) for x in lines],
            )

    def imported(self, label: str) -> list[Imported]:
        """The imported measurements of device `label`, in import and line order."""
        rows = self.db.execute(
            "SELECT i.id, i.target, m.key, m.latency_ms FROM imported m "
            "JOIN imports i ON i.id=m.import_id WHERE i.label=? "
            "ORDER BY i.imported_at, i.id, m.line",
            (label,),
        )
        return [Imported(*row) for row in rows]

    def list_imports(self) -> list[dict]:
        """Every import, oldest first: id, label, target, file, sha256, lines, imported_at."""
        rows = self.db.execute("SELECT * FROM imports ORDER BY imported_at, id")
        return [dict(row) for row in rows]

    # ----------------------------------------------------------------- campaigns
    def refuse_taken_campaign_name(self, name: str) -> None:
        """ValueError when a campaign has this name already (names are unique)."""
        taken = self.db.execute("SELECT id FROM campaigns WHERE name=?", (name,)).fetchone()
        if taken is not None:
            raise ValueError(
                f"name: campaign {taken['id']} is already named {name!r}; choose another name"
            )

    def add_campaign(
        self, campaign_id: str, name: str, spec: str, items: Sequence[CampaignItem]
    ) -> None:
        """Record a `created` campaign with its items, whole or not at all; its name is
        checked again under the write lock."""
        with self.transaction():
            self.refuse_taken_campaign_name(name)
            self.db.execute(
                "INSERT INTO campaigns(id, name, spec, state, created_at) "
                "VALUES (?,?,?,'created',?)",
                (campaign_id, name, spec, time.time()),
            )
            self.db.executemany(
                "INSERT INTO campaign_items VALUES (?,?,?,?,?,?,?,?)",
                [
                    (campaign_id, i.item, i.kind, i.key, i.r, i.w, i.digest, json.dumps(i.inputs))
                    for i in items
                ],
            )

    def find_campaigns(self, id_or_name: str) -> list[Campaign]:
        """The campaign with this id or, failing that, those with this name, oldest first
        (databases from before names were unique may have several)."""
        rows = self.db.execute(
            "SELECT * FROM campaigns WHERE id=? OR (name=? AND NOT EXISTS "
            "(SELECT 1 FROM campaigns WHERE id=?)) ORDER BY created_at",
            (id_or_name,) * 3,
        )
        return [Campaign(**row) for row in rows]

    def campaign(self, campaign_id: str) -> Campaign:
        row = self.db.execute("SELECT * FROM campaigns WHERE id=?", (campaign_id,)).fetchone()
        if row is None:
            raise NotFound(f"campaign: no campaign {campaign_id!r}")
        return Campaign(**row)

    def list_campaigns(self) -> list[Campaign]:
        """Every campaign, oldest first."""
        rows = self.db.execute("SELECT * FROM campaigns ORDER BY created_at")
        return [Campaign(**row) for row in rows]

    def campaign_items(self, campaign_id: str) -> list[CampaignItem]:
        rows = self.db.execute(
            "SELECT item, kind, key, r, w, digest, inputs FROM campaign_items "
            "WHERE campaign_id=? ORDER BY item",
            (campaign_id,),
        )
        return [CampaignItem(**{**row, "inputs": json.loads(row["inputs"])}) for row in rows]

    def begin_campaign_start(self, campaign_id: str) -> None:
        """Mark a created campaign `starting` (a start that was interrupted, still
        `starting`, may resume); ValueError for a campaign in any other state."""
        with self.transaction():
            claimed = self.db.execute(
                "UPDATE campaigns SET state='starting', started_at=COALESCE(started_at, ?) "
                "WHERE id=? AND state IN ('created','starting')",
                (time.time(), campaign_id),
            )
            if claimed.rowcount == 0:
                state = self.campaign(campaign_id).state
                raise ValueError(f"campaign {campaign_id}: is {state}, not created")

    def campaign_jobs_queued(self, campaign_id: str, target: Devices | None = None) -> int:
        """Jobs queued for the campaign so far (for one target, or all)."""
        query = "SELECT COUNT(*) FROM campaign_jobs WHERE campaign_id=?"
        args: tuple[str, ...] = (campaign_id,)
        if target is not None:
            query, args = query + " AND target=?", (campaign_id, target.name)
        return self.db.execute(query, args).fetchone()[0]

    def queue_campaign_jobs(
        self,
        campaign_id: str,
        target: Devices,
        begin: int,
        jobs: Sequence[tuple[int, int, bytes, str]],
        max_attempts: int,
        max_disturbed: int = 4,
    ) -> bool:
        """Queue a chunk of a starting campaign's jobs for `target`, each (item, repeat,
        spec, model digest), continuing that target's jobs at index `begin`. False, queueing
        nothing, when another start has queued them all; ValueError when the campaign was
        cancelled meanwhile, or another start is queueing this very chunk."""
        with self.transaction():
            state = self.campaign(campaign_id).state
            if state == "running":
                return False
            if state != "starting":
                raise ValueError(
                    f"campaign {campaign_id}: became {state} while its jobs were queued"
                )
            if self.campaign_jobs_queued(campaign_id, target) != begin:
                raise ValueError(f"campaign {campaign_id}: another process is queueing its jobs")
            ids = self.enqueue(
                [(spec, digest) for _, _, spec, digest in jobs],
                label=target.label,
                agent_id=target.agent,
                max_attempts=max_attempts,
                max_disturbed=max_disturbed,
                campaign=campaign_id,
            )
            self.db.executemany(
                "INSERT INTO campaign_jobs VALUES (?,?,?,?,?)",
                [
                    (job_id, campaign_id, item, target.name, repeat)
                    for job_id, (item, repeat, _, _) in zip(ids, jobs, strict=True)
                ],
            )
        return True

    def finish_campaign_start(self, campaign_id: str) -> None:
        """All its jobs are queued: the campaign runs, or is done already if its agents
        were that quick."""
        with self.transaction():
            self.db.execute(
                "UPDATE campaigns SET state='running' WHERE id=? AND state='starting'",
                (campaign_id,),
            )
            self.close_campaign_if_finished(campaign_id)

    def cancel_campaign(self, campaign_id: str) -> int:
        """Mark an unfinished campaign cancelled and cancel its queued and leased jobs;
        returns how many jobs were cancelled."""
        with self.transaction():
            self.db.execute(
                f"UPDATE campaigns SET state='cancelled', finished_at=? WHERE id=? "
                f"AND state IN {_OPEN_CAMPAIGN}",
                (time.time(), campaign_id),
            )
            jobs = [
                r[0]
                for r in self.db.execute(
                    "SELECT job_id FROM campaign_jobs WHERE campaign_id=?", (campaign_id,)
                )
            ]
            return self.cancel_jobs(jobs)

    def campaign_progress(
        self, campaign_id: str, since: float, max_errors: int = 3
    ) -> CampaignProgress:
        with self._snapshot():
            counts: dict[str, dict[str, int]] = {}
            for row in self.db.execute(
                "SELECT cj.target, j.state, COUNT(*) AS n FROM campaign_jobs cj JOIN jobs j "
                "ON j.id = cj.job_id WHERE cj.campaign_id=? GROUP BY cj.target, j.state",
                (campaign_id,),
            ):
                counts.setdefault(row["target"], {})[row["state"]] = row["n"]
            recent = self.db.execute(
                "SELECT COUNT(*) FROM jobs WHERE campaign=? AND finished_at>=?",
                (campaign_id, since),
            ).fetchone()[0]
            errors = [
                r[0]
                for r in self.db.execute(
                    "SELECT error FROM jobs WHERE campaign=? AND state IN ('failed','disturbed') "
                    "LIMIT ?",
                    (campaign_id, max_errors),
                )
            ]
        return CampaignProgress(counts, recent, errors)

    # ----------------------------------------------------- results of campaign items
    def targeted_items(
        self, target: Devices, kind: str, campaign_ids: Sequence[str] = ()
    ) -> set[tuple[int | None, str]]:
        """(r, key) of every item of this kind that campaigns (the given ones, or any) queued
        for `target`."""
        where, params = _item_filter(target, kind, campaign_ids)
        rows = self.db.execute(
            f"SELECT DISTINCT ci.r, ci.key FROM {_ITEM_JOBS} WHERE {where}", params
        )
        return {(row[0], row[1]) for row in rows}

    def targeted_campaigns(self, target: Devices, kind: str) -> list[Campaign]:
        """The campaigns that queued items of this kind for `target`, oldest first."""
        where, params = _item_filter(target, kind, [])
        rows = self.db.execute(
            "SELECT * FROM campaigns WHERE id IN "
            f"(SELECT DISTINCT cj.campaign_id FROM {_ITEM_JOBS} WHERE {where}) "
            "ORDER BY created_at",
            params,
        )
        return [Campaign(**row) for row in rows]

    def accepted_count(self, target: Devices, kind: str) -> int:
        """How many accepted OK results of agents not quarantined the target's items of this
        kind have, over every campaign (the status page redraws a LUT plot when it grows)."""
        where, params = _item_filter(target, kind, [])
        return self.db.execute(
            f"SELECT COUNT(*) FROM {_ITEM_RESULTS} WHERE {where} AND res.accepted=1 "
            f"AND res.status='ok' AND {_TRUSTED}",
            params,
        ).fetchone()[0]

    def item_jobs(
        self, target: Devices, kind: str, campaign_ids: Sequence[str] = ()
    ) -> dict[tuple[int | None, str], ItemJobs]:
        """Per (r, key) item of this kind queued for `target` (by the given campaigns, or
        any): its jobs by state, and how many disturbed results they had."""
        where, params = _item_filter(target, kind, campaign_ids)
        states: dict[tuple[int | None, str], dict[str, int]] = {}
        disturbed: dict[tuple[int | None, str], int] = {}
        for row in self.db.execute(
            f"SELECT ci.r, ci.key, j.state, COUNT(*) AS n, SUM(j.disturbed) AS disturbed "
            f"FROM {_ITEM_JOBS} JOIN jobs j ON j.id=cj.job_id WHERE {where} "
            "GROUP BY ci.r, ci.key, j.state",
            params,
        ):
            item = (row["r"], row["key"])
            states.setdefault(item, {})[row["state"]] = row["n"]
            disturbed[item] = disturbed.get(item, 0) + row["disturbed"]
        return {item: ItemJobs(states[item], disturbed[item]) for item in states}

    def item_results(
        self,
        target: Devices,
        kind: str,
        campaign_ids: Sequence[str] = (),
        include_disturbed: bool = False,
    ) -> list[ItemResult]:
        """The accepted OK results of items of this kind measured for `target` (by the
        given campaigns, or any) by agents not quarantined, in the order they arrived. With
        `include_disturbed`, also the disturbed results of jobs that ended `disturbed` (never
        measured cleanly), flagged as such."""
        where, params = _item_filter(target, kind, campaign_ids)
        taken = "(res.accepted=1 AND res.status='ok')"
        if include_disturbed:
            taken = f"({taken} OR (res.status='disturbed' AND j.state='disturbed'))"
        rows = self.db.execute(
            f"SELECT ci.r, ci.key, res.median_ms, res.samples, res.drift, res.agent_id, "
            f"res.runtime_versions, cj.campaign_id, res.status, res.peak_rss_bytes "
            f"FROM {_ITEM_RESULTS} "
            f"JOIN jobs j ON j.id=res.job_id WHERE {where} AND {taken} AND {_TRUSTED} "
            "ORDER BY res.id",
            params,
        )
        return [
            ItemResult(
                row["r"],
                row["key"],
                row["median_ms"],
                _samples(row["samples"]),
                row["drift"],
                row["agent_id"],
                row["runtime_versions"],
                row["campaign_id"],
                row["status"] == "disturbed",
                row["peak_rss_bytes"] or 0,
            )
            for row in rows
        ]

    def campaign_results(self, campaign_id: str) -> Iterator[dict]:
        """Every result of the campaign, accepted or not, of agents not quarantined, in the
        order they arrived: the
        CAMPAIGN_RESULT_KEYS, RESULT_FIELDS (objects decoded) and samples_ns (int list).
        A generator over one read snapshot: it streams campaigns of any size."""
        rows = self.backend.stream(
            f"SELECT cj.campaign_id AS campaign, cj.target, cj.repeat, ci.kind, ci.key, ci.r, "
            f"ci.w, res.* FROM {_ITEM_RESULTS} WHERE cj.campaign_id=? AND {_TRUSTED} "
            f"ORDER BY res.id",
            (campaign_id,),
        )
        for row in rows:
            record = {column: row[column] for column in CAMPAIGN_RESULT_KEYS + RESULT_FIELDS}
            for column in JSON_RESULT_FIELDS:
                record[column] = json.loads(record[column]) if record[column] else {}
            record["samples_ns"] = _samples(row["samples"]).tolist()
            yield record

    # ------------------------------------------ the fleet at a glance (`ofa-coord status`)
    def current_leases(self) -> list[CurrentLease]:
        """Every active lease, oldest first, with its job's spec and campaign (if any)."""
        with self._snapshot():
            rows = self.db.execute(
                "SELECT l.agent_id, l.job_id, l.issued_at, j.spec, c.id AS campaign_id, "
                "c.name AS campaign_name FROM leases l JOIN jobs j ON j.id=l.job_id "
                "LEFT JOIN campaigns c ON c.id=j.campaign WHERE l.state='active' "
                "ORDER BY l.issued_at, l.id"
            ).fetchall()
        return [CurrentLease(**row) for row in rows]

    def label_queue(self, since: float) -> list[LabelQueue]:
        """Per device label with jobs queued, leased or finished since `since`: how many of
        each. Finished counts the jobs measured to an end (done, failed, disturbed), not
        cancelled ones, which took no device time."""
        with self._snapshot():
            rows = self.db.execute(
                "SELECT target_label AS label, "
                "SUM(CASE WHEN state='queued' THEN 1 ELSE 0 END) AS queued, "
                "SUM(CASE WHEN state='leased' THEN 1 ELSE 0 END) AS leased, "
                "SUM(CASE WHEN state IN ('done','failed','disturbed') AND finished_at>=? "
                "THEN 1 ELSE 0 END) AS finished_since FROM jobs WHERE target_label IS NOT NULL "
                "AND (state IN ('queued','leased') OR finished_at>=?) "
                "GROUP BY target_label ORDER BY target_label",
                (since, since),
            ).fetchall()
        return [LabelQueue(**row) for row in rows]

    def agent_result_counts(self) -> dict[tuple[str, str], int]:
        """{(agent id, status): results stored}."""
        rows = self.db.execute(
            "SELECT agent_id, status, COUNT(*) FROM results GROUP BY agent_id, status"
        )
        return {(agent, status): count for agent, status, count in rows}

    def last_drifts(self) -> dict[str, float]:
        """Each agent's reference drift as its latest result carrying one reported it."""
        rows = self.db.execute(
            "SELECT agent_id, drift FROM results WHERE id IN (SELECT MAX(id) FROM results "
            "WHERE drift IS NOT NULL GROUP BY agent_id)"
        )
        return dict(rows)

    def last_errors(self) -> list[AgentError]:
        """Each agent's most recent failed or disturbed result, by agent id. (The inner scan
        reads only the columns before the samples, never their overflow pages.)"""
        with self._snapshot():
            rows = self.db.execute(
                "SELECT agent_id, status, COALESCE(message, '') AS message, evidence, "
                "received_at FROM results WHERE id IN (SELECT MAX(id) FROM results "
                "WHERE status IN ('failed','disturbed') GROUP BY agent_id) ORDER BY agent_id"
            ).fetchall()
        return [
            AgentError(
                row["agent_id"],
                row["status"],
                row["message"],
                tuple(json.loads(row["evidence"]).get("reasons", []) if row["evidence"] else ()),
                row["received_at"],
            )
            for row in rows
        ]
