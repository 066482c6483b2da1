"""The fleet service below gRPC, on a real store: what happens to leases when the agent's
call is cancelled while the store's worker thread is committing them."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from coordinator.server.fleet import FleetService, FleetSettings
from coordinator.state import BlobStore, Store, UnknownAgent


def test_leases_committed_for_a_cancelled_call_are_given_back(tmp_path):
    store = Store(tmp_path / "fleet.db")
    secret = store.create_token("a")
    agent = store.register_agent(
        store.token_by_secret(secret), "", ["cpu"], {"machine": "x86_64"}, 1, "test"
    )
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
    states = [
        row[0] for row in store.db.execute("SELECT state FROM leases WHERE job_id=?", (job_id,))
    ]
    assert states == ["released"]
    store.close()


def test_an_agent_forgotten_during_its_long_poll_leases_nothing(tmp_path):
    store = Store(tmp_path / "fleet.db")
    secret = store.create_token("a")
    agent = store.register_agent(
        store.token_by_secret(secret), "", ["cpu"], {"machine": "x86_64"}, 1, "test"
    )
    token = store.token_by_secret(secret)
    fleet = FleetService(store, BlobStore(store), FleetSettings())
    operator = Store(tmp_path / "fleet.db")  # the CLI, in another process
    real_lease_jobs, polled = store.lease_jobs, threading.Event()

    def lease_jobs(*args, **kwargs):
        jobs = real_lease_jobs(*args, **kwargs)
        polled.set()  # the poll found nothing and goes on to wait for work
        return jobs

    store.lease_jobs = lease_jobs

    async def forgotten_while_polling() -> None:
        call = asyncio.create_task(fleet.lease(token, agent, 1, 10))
        await asyncio.get_running_loop().run_in_executor(None, polled.wait)
        assert not call.done()
        operator.forget_agent(agent)
        operator.enqueue([(b"spec", BlobStore(operator).put(b"model"))], agent_id=agent)
        fleet.notify()
        with pytest.raises(UnknownAgent):
            await call
        await fleet.stop()

    asyncio.run(forgotten_while_polling())
    assert operator.job_counts() == {"queued": 1}
    operator.close()
    store.close()
