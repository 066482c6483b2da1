"""The fleet's logic, below the gRPC layer: registration, liveness, long-poll leasing,
blob reads, reports, and the sweeper that requeues the work of dead agents.

It runs on the server's event loop and owns the only connection to the store in the
server process. Jobs enqueued by other processes (the CLI) are noticed through SQLite's
`data_version`, so long-polling agents wake within a fraction of a second.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from coordinator.blobs import BlobStore
from coordinator.store import LeasedJob, ReportOutcome, Store, Token

__all__ = ["FleetSettings", "FleetService"]

log = logging.getLogger("ofa-coord")


@dataclass(frozen=True)
class FleetSettings:
    heartbeat_interval_s: float = 5.0
    missed_heartbeats: int = 3          # an agent this many intervals silent is offline
    lease_seconds: float = 60.0         # renewed by every heartbeat
    max_wait_s: float = 20.0            # longest LeaseJobs long-poll
    max_chunk_bytes: int = 2 * 2**20
    max_jobs_per_lease: int = 8          # one agent cannot drain a device class's queue
    watch_interval_s: float = 0.2

    @property
    def offline_after_s(self) -> float:
        return self.heartbeat_interval_s * self.missed_heartbeats

    @property
    def sweep_interval_s(self) -> float:
        return min(1.0, self.heartbeat_interval_s / 2)


class FleetService:
    def __init__(self, store: Store, blobs: BlobStore, settings: FleetSettings) -> None:
        self.store, self.blobs, self.settings = store, blobs, settings
        self._wakeup = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    async def start(self) -> None:
        self.store.grant_restart_grace(self.settings.lease_seconds)
        self._tasks = [asyncio.create_task(self._sweeper()), asyncio.create_task(self._watcher())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def notify(self) -> None:
        """Wake every long-polling agent: there may be work."""
        self._wakeup.set()
        self._wakeup = asyncio.Event()

    # ------------------------------------------------------------------ handlers
    def register(self, token: Token, agent_id: str, labels: list[str], device: dict,
                 threads: int, version: str) -> str:
        agent_id = self.store.register_agent(token, agent_id, labels, device, threads, version)
        log.info("agent %s registered (labels %s)", agent_id, ",".join(labels) or "-")
        self.notify()
        return agent_id

    def heartbeat(self, token: Token, agent_id: str, lease_ids: list[str],
                  telemetry: dict) -> list[str]:
        self.store.check_agent(agent_id, token)
        return self.store.heartbeat(agent_id, lease_ids, telemetry, self.settings.lease_seconds)

    async def lease(self, token: Token, agent_id: str, max_jobs: int,
                    wait_s: float) -> list[LeasedJob]:
        self.store.check_agent(agent_id, token)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, min(wait_s, self.settings.max_wait_s))
        while True:
            wakeup = self._wakeup
            count = min(max(1, max_jobs), self.settings.max_jobs_per_lease)
            jobs = self.store.lease_jobs(agent_id, count, self.settings.lease_seconds)
            remaining = deadline - loop.time()
            if jobs or remaining <= 0:
                return jobs
            try:
                await asyncio.wait_for(wakeup.wait(), remaining)
            except asyncio.TimeoutError:
                pass

    def read_blob(self, digest: str, offset: int, limit: int) -> tuple[bytes, int]:
        limit = self.settings.max_chunk_bytes if limit <= 0 else min(limit, self.settings.max_chunk_bytes)
        return self.blobs.read(digest, offset, limit)

    def report(self, token: Token, agent_id: str, job_id: str, lease_id: str, status: str,
               result: dict) -> ReportOutcome:
        self.store.check_agent(agent_id, token)
        outcome = self.store.report(agent_id, job_id, lease_id, status, result)
        if status != "ok":
            self.notify()  # a released or failed job may be queued again
        return outcome

    # ---------------------------------------------------------------- background
    async def _sweeper(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sweep_interval_s)
            try:
                swept = self.store.sweep(self.settings.offline_after_s)
            except Exception:  # a busy database must not kill the sweeper
                log.exception("sweep failed")
                continue
            if any(swept.values()):
                log.info("sweep: %s", swept)
                self.notify()

    async def _watcher(self) -> None:
        version = self.store.data_version()
        while True:
            await asyncio.sleep(self.settings.watch_interval_s)
            current = self.store.data_version()
            if current != version:
                version = current
                self.notify()
