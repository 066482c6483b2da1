"""The fleet's logic, below the gRPC layer: registration, liveness, long-poll leasing,
blob reads, reports, and the sweeper that requeues the work of dead agents.

It owns the only connection to the store in the server process, and uses it from one
worker thread: database work (which may wait for a CLI's write lock) never blocks the event
loop, and the calls are serialised as SQLite serialises writes anyway. (On PostgreSQL,
several threads with a connection each were measured, and lost on two cores: see
docs/benchmarks.md.) Jobs enqueued by other processes (the CLI, other coordinators) are
noticed through the store's `data_version`, so long-polling agents wake within a fraction
of a second.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from typing import TypeVar

from coordinator.server.quarantine import review
from coordinator.state import BlobStore, Forbidden, LeasedJob, ReportOutcome, Store, Token

__all__ = ["FleetSettings", "FleetService", "SETTINGS_RANGES"]

log = logging.getLogger("ofa-coord")
T = TypeVar("T")


# (lowest, highest) of each FleetSettings field: a range a fleet can run with. `serve`'s
# options take theirs from here.
SETTINGS_RANGES = {
    "heartbeat_interval_s": (0.01, 3600),
    "missed_heartbeats": (1, 1000),
    "lease_seconds": (0.1, 7 * 86400),
    "max_wait_s": (0, 3600),
    "max_chunk_bytes": (1, 8 * 2**20),
    "max_jobs_per_lease": (1, 128),
    "watch_interval_s": (0.01, 60),
    "remeasure_cooldown_s": (0, 86400),
}


@dataclass(frozen=True)
class FleetSettings:
    heartbeat_interval_s: float = 5.0
    missed_heartbeats: int = 3  # an agent this many intervals silent is offline
    lease_seconds: float = 60.0  # renewed by every heartbeat
    max_wait_s: float = 20.0  # longest LeaseJobs long-poll
    max_chunk_bytes: int = 2 * 2**20
    max_jobs_per_lease: int = 8  # also the most leases one agent holds at once
    watch_interval_s: float = 0.2
    # a disturbed job waits this long before its first re-measure, doubling for each next
    remeasure_cooldown_s: float = 10.0

    def __post_init__(self) -> None:
        """Every value finite and in a range a fleet can run with (a lease of `inf` seconds
        would be committed, then fail to reach the agent)."""
        for f in fields(self):
            value = getattr(self, f.name)
            low, high = SETTINGS_RANGES[f.name]
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not low <= value <= high
                or (f.type == "int" and not isinstance(value, int))
            ):
                raise ValueError(
                    f"{f.name}: expected a finite {f.type} in [{low}, {high}], got {value!r}"
                )

    @property
    def offline_after_s(self) -> float:
        return self.heartbeat_interval_s * self.missed_heartbeats

    @property
    def sweep_interval_s(self) -> float:
        return min(1.0, self.heartbeat_interval_s / 2)


class FleetService:
    def __init__(
        self,
        store: Store,
        blobs: BlobStore,
        settings: FleetSettings,
        check_spec: Callable[[bytes], object] = lambda spec: spec,
    ) -> None:
        """`check_spec` raises ValueError for a job spec that could not reach an agent; such
        a job is failed with that reason instead of being leased."""
        self.store, self.blobs, self.settings = store, blobs, settings
        self.check_spec = check_spec
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._to_review: set[str] = set()  # labels with results not compared yet
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="store")

    async def db(self, call: Callable[..., T], *args) -> T:
        """Run a store (or blob) call on the store's worker thread."""
        return await asyncio.get_running_loop().run_in_executor(self._worker, call, *args)

    async def start(self) -> None:
        await self.db(
            self.store.grant_restart_grace,
            self.settings.lease_seconds,
            self.settings.offline_after_s,
        )
        self._tasks = [asyncio.create_task(self._sweeper()), asyncio.create_task(self._watcher())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._worker.shutdown(wait=True)

    def notify(self) -> None:
        """Wake every long-polling agent: there may be work."""
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    # ------------------------------------------------------------------ handlers
    async def register(
        self,
        token: Token,
        agent_id: str,
        labels: list[str],
        device: dict,
        threads: int,
        version: str,
    ) -> str:
        agent_id = await self.db(
            self.store.register_agent,
            token,
            agent_id,
            labels,
            device,
            threads,
            version,
            self.settings.offline_after_s,
        )
        log.info("agent %s registered (labels %s)", agent_id, ",".join(labels) or "-")
        self.notify()  # its old leases, if it restarted, are queued again
        return agent_id

    async def heartbeat(
        self, token: Token, agent_id: str, lease_ids: list[str], telemetry: dict
    ) -> list[str]:
        def beat() -> list[str]:
            self.store.check_agent(agent_id, token)
            return self.store.heartbeat(agent_id, lease_ids, telemetry, self.settings.lease_seconds)

        return await self.db(beat)

    async def lease(
        self, token: Token, agent_id: str, max_jobs: int, wait_s: float
    ) -> list[LeasedJob]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, min(wait_s, self.settings.max_wait_s))
        while True:
            wakeup = self._wakeup
            jobs = await self._lease_or_give_back(token, agent_id, max(1, max_jobs))
            remaining = deadline - loop.time()
            if jobs or remaining <= 0:
                return jobs
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    async def _lease_or_give_back(
        self, token: Token, agent_id: str, wanted: int
    ) -> list[LeasedJob]:
        """`_lease_once` on the worker thread. When the agent's call is cancelled meanwhile
        (it stopped, or gave up waiting), the leases committed for it would never reach it:
        they are given back at once rather than waiting out their expiry."""
        future = asyncio.get_running_loop().run_in_executor(
            self._worker, self._lease_once, token, agent_id, wanted
        )
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            jobs = await future
            if jobs:
                await self.db(self.store.give_back, [job.lease_id for job in jobs])
                log.info(
                    "agent %s: its call was cancelled; %d lease(s) given back", agent_id, len(jobs)
                )
            raise

    def _lease_once(self, token: Token, agent_id: str, wanted: int) -> list[LeasedJob]:
        """Up to `wanted` jobs, never more than `max_jobs_per_lease` held at once. The agent
        is checked each time: one forgotten during a long poll leases nothing more."""
        self.store.check_agent(agent_id, token)
        room = self.settings.max_jobs_per_lease - self.store.active_leases(agent_id)
        if room <= 0:
            return []
        return self.store.lease_jobs(
            agent_id, min(wanted, room), self.settings.lease_seconds, check_spec=self.check_spec
        )

    async def read_blob(
        self, token: Token, digest: str, offset: int, limit: int
    ) -> tuple[bytes, int]:
        """A chunk of a model the caller's agent has an active lease to measure."""
        most = self.settings.max_chunk_bytes
        limit = most if limit <= 0 else min(limit, most)

        def read() -> tuple[bytes, int]:
            self.blobs.path(digest)  # a malformed digest is a bad argument
            if not (token.agent_id and self.store.blob_leased_to(token.agent_id, digest)):
                raise Forbidden(
                    f"digest: blob {digest} is not the model of a job leased to this token's agent"
                )
            return self.blobs.read(digest, offset, limit)

        return await self.db(read)

    async def report(
        self,
        token: Token,
        agent_id: str,
        job_id: str,
        lease_id: str,
        status: str,
        result: dict,
        check: Callable[[bytes], None],
    ) -> ReportOutcome:
        """`check` gets the job's spec and raises ValueError for a result that contradicts
        it; nothing is stored then."""

        def store_report() -> tuple[ReportOutcome, str | None]:
            self.store.check_agent(agent_id, token)
            check(self.store.job_spec(job_id))
            outcome = self.store.report(
                agent_id, job_id, lease_id, status, result, self.settings.remeasure_cooldown_s
            )
            accepted = status == "ok" and outcome.accepted and not outcome.duplicate
            return outcome, self.store.job(job_id)["target_label"] if accepted else None

        outcome, label = await self.db(store_report)
        if label is not None:
            self._to_review.add(label)
        if status != "ok":
            self.notify()  # a released or failed job may be queued again
        return outcome

    # ---------------------------------------------------------------- background
    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                swept = await self.db(self.store.sweep, self.settings.offline_after_s)
                await self._review()
            except Exception:  # a busy database must not kill the sweeper
                log.exception("sweep failed")
                continue
            if any(swept.values()):
                log.info("sweep: %s", swept)
                self.notify()

    async def _review(self) -> None:
        """Compare the agents of each label that got an accepted OK result since the last
        sweep with their peers (`quarantine.review`). Here rather than in the report, or
        every N reports: a label is compared at most once a sweep however fast its results
        arrive, off the report's path, and no result waits for later ones to be judged."""
        labels, self._to_review = self._to_review, set()
        try:
            for label in sorted(labels):
                for peer in await self.db(review, self.store, label):
                    log.warning(
                        "agent %s quarantined: its medians for label %s are %.3gx its peers' "
                        "over %d shared models",
                        peer.agent_id,
                        label,
                        peer.ratio,
                        peer.shared,
                    )
        except Exception:
            self._to_review |= labels  # compared again at the next sweep
            raise

    async def _watcher(self) -> None:
        version = await self.db(self.store.data_version)
        while True:
            await asyncio.sleep(self.settings.watch_interval_s)
            current = await self.db(self.store.data_version)
            if current != version:
                version = current
                self.notify()
