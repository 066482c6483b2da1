"""Several stores on one database, as several coordinators (or a coordinator and the CLI)
share it: every job is handed out once, and reported once, however the calls interleave."""

from __future__ import annotations

import itertools
import random
import threading
from collections import Counter

from tests.state.helpers import SPEC, add_agent, age_leases, ok

JOBS = 400
STORES = 6  # each its own connection, in its own thread
AGENTS = 12


def test_parallel_leasing_hands_each_job_out_once(open_store, digest):
    """Hundreds of lease calls from six stores at once: no job is leased twice, none is
    lost, and reporting each lease from another store than the one that leased it accepts
    exactly one result per job."""
    first = open_store()
    for n in range(AGENTS):
        add_agent(first, f"a{n}")
    first.enqueue([(SPEC + n.to_bytes(2, "big"), digest) for n in range(JOBS)], label="cpu")
    stores = [open_store() for _ in range(STORES)]
    leased: list[tuple[str, str, str]] = []  # (agent, job, lease)
    calls = Counter()
    failures: list[BaseException] = []
    lock = threading.Lock()
    start = threading.Barrier(STORES)

    def lease_until_empty(n: int) -> None:
        rng = random.Random(n)
        agents = itertools.cycle([f"a{k}" for k in range(n, AGENTS, STORES)])
        try:
            start.wait()
            for agent in agents:
                got = stores[n].lease_jobs(agent, rng.randint(1, 2), 3600.0)
                with lock:
                    calls[n] += 1
                    leased.extend((agent, job.job_id, job.lease_id) for job in got)
                if not got:
                    return
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=lease_until_empty, args=(n,)) for n in range(STORES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert sum(calls.values()) >= JOBS / 2  # hundreds of calls (SQLite's lock is not fair:
    # a store may find the queue empty before its first call is served)
    jobs = Counter(job for _, job, _ in leased)
    assert len(jobs) == JOBS and set(jobs.values()) == {1}, "a job was leased twice or lost"
    assert first.job_counts() == {"leased": JOBS}

    def report_all(n: int) -> None:
        try:
            for agent, job, lease_id in leased[n::STORES]:
                reporter = stores[(n + 1) % STORES]
                assert reporter.report(agent, job, lease_id, "ok", ok()).accepted
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=report_all, args=(n,)) for n in range(STORES)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert first.job_counts() == {"done": JOBS}
    assert first.result_counts() == {"stored": JOBS, "accepted": JOBS}


def test_sweepers_on_every_store_expire_each_lease_once(open_store, digest):
    """Every coordinator runs the sweeper: sweeping from four stores at once expires each
    overdue lease once, and requeues its job once."""
    first = open_store()
    add_agent(first)
    first.enqueue([(SPEC + bytes([n]), digest) for n in range(40)], label="cpu")
    leased = first.lease_jobs("a1", 40, 3600.0)
    age_leases(first, 7200.0)
    stores = [open_store() for _ in range(4)]
    expired: list[int] = []
    start = threading.Barrier(len(stores))

    def sweep(store) -> None:
        start.wait()
        expired.append(store.sweep(offline_after_s=7200.0)["expired"])

    threads = [threading.Thread(target=sweep, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert sum(expired) == len(leased) == 40
    assert first.job_counts() == {"queued": 40}
    assert {first.job(job.job_id)["attempts"] for job in leased} == {1}
