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
    lock = threading.Lock()

    def lease_until_empty(n: int) -> None:
        rng = random.Random(n)
        for agent in itertools.cycle([f"a{k}" for k in range(n, AGENTS, STORES)]):
            got = stores[n].lease_jobs(agent, rng.randint(1, 2), 3600.0)
            with lock:
                calls[n] += 1
                leased.extend((agent, job.job_id, job.lease_id) for job in got)
            if not got:
                return

    run_together(lease_until_empty, STORES)
    assert sum(calls.values()) >= JOBS / 2  # hundreds of calls (SQLite's lock is not fair:
    # a store may find the queue empty before its first call is served)
    jobs = Counter(job for _, job, _ in leased)
    assert len(jobs) == JOBS and set(jobs.values()) == {1}, "a job was leased twice or lost"
    assert first.job_counts() == {"leased": JOBS}

    def report_all(n: int) -> None:
        for agent, job, lease_id in leased[n::STORES]:
            reporter = stores[(n + 1) % STORES]
            assert reporter.report(agent, job, lease_id, "ok", ok()).accepted

    run_together(report_all, STORES)
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
    run_together(lambda n: expired.append(stores[n].sweep(offline_after_s=7200.0)["expired"]), 4)
    assert sum(expired) == len(leased) == 40
    assert first.job_counts() == {"queued": 40}
    assert {first.job(job.job_id)["attempts"] for job in leased} == {1}


def run_together(work, count: int) -> None:
    """`work(n)` for n in 0..count-1, each on its own thread, started at once; the first
    failure of any of them is raised here."""
    start = threading.Barrier(count)
    failures: list[BaseException] = []

    def run(n: int) -> None:
        try:
            start.wait()
            work(n)
        except BaseException as exc:  # raised by the caller's thread
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a thread did not finish"
    if failures:
        raise failures[0]
