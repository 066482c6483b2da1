"""The fleet service below gRPC, on a real store: what happens to leases when the agent's
call is cancelled while the store's worker thread is committing them."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from coordinator.blobs import BlobStore
from coordinator.fleet import FleetService, FleetSettings
from coordinator.store import Store


def test_leases_committed_for_a_cancelled_call_are_given_back(tmp_path):
    store = Store(tmp_path / "fleet.db")
    secret = store.create_token("a")
    agent = store.register_agent(store.token_by_secret(secret), "", ["cpu"],
                                 {"machine": "x86_64"}, 1, "test")
    token = store.token_by_secret(secret)  # now bound to the agent
    (job_id,) = store.enqueue([(b"spec", BlobStore(store).put(b"model"))], label="cpu")
    fleet = FleetService(store, BlobStore(store), FleetSettings())
    real_lease_jobs, inside = store.lease_jobs, threading.Event()

    def slow_lease_jobs(*args, **kwargs):  # fault injection: the call is cancelled meanwhile
        inside.set()
        time.sleep(0.5)
        return real_lease_jobs(*args, **kwargs)

    store.lease_jobs = slow_lease_jobs

    async def cancelled_while_leasing() -> None:
        call = asyncio.create_task(fleet.lease(token, agent, 1, 0))
        await asyncio.get_running_loop().run_in_executor(None, inside.wait)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await fleet.stop()

    asyncio.run(cancelled_while_leasing())
    job = store.job(job_id)
    assert (job["state"], job["attempts"]) == ("queued", 0)
    states = [row[0] for row in store.db.execute("SELECT state FROM leases WHERE job_id=?",
                                                 (job_id,))]
    assert states == ["released"]
    store.close()
