"""Pinning a measurement's threads to fixed cores, where the OS allows it.

A thread the scheduler moves between cores loses its caches and lands on whichever core is
free, fast or slow (big.LITTLE phones); nn-Meter's maintainers and TFLite's benchmark tool
both pin. The measuring (calling) thread goes on the first chosen core and each onnxruntime
pool thread on one of the others. The last free cores are chosen: the OS tends to serve
interrupts on the first ones, and another agent of the host may hold some.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["claimed_cores", "pinned", "ort_affinities"]

LOCKS = "ofa-agent-cores"  # in the temporary folder: one lock file per core, host-wide


@contextlib.contextmanager
def claimed_cores(threads: int) -> Iterator[tuple[int, ...]]:
    """The cores `threads` measuring threads are pinned to while the block runs, held
    against the other agents (and `ofa-agent bench` runs) of this host by a lock file per
    core: each takes the last free ones, so two agents on one host never share a core. ()
    where the OS cannot pin, or fewer than `threads` of the process's cores are free."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no affinity call
        yield ()
        return
    with contextlib.ExitStack() as held:
        cores: list[int] = []
        for core in reversed(allowed):
            if len(cores) == threads:
                break
            if _lock(held, core):
                cores.append(core)
        yield tuple(sorted(cores)) if len(cores) == threads else ()


def _lock(held: contextlib.ExitStack, core: int) -> bool:
    """Take core's lock file without waiting (released when `held` closes or the process
    dies); False when another process holds it or the lock folder cannot be used."""
    try:  # the temporary folder is found (and may be missing) only when needed
        folder = Path(tempfile.gettempdir()) / LOCKS
        folder.mkdir(mode=0o777, exist_ok=True)
        handle = held.enter_context(open(folder / f"core{core}.lock", "a"))
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def pinned(cores: Sequence[int]) -> Iterator[tuple[int, ...]]:
    """Pin the calling thread to `cores[0]` for the block (threads it starts inherit that),
    then restore its affinity. Yields the cores actually used: () where the OS refused."""
    if not cores:
        yield ()
        return
    try:
        before = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cores[0]})  # 0: the calling thread, on Linux
    except (AttributeError, OSError):  # e.g. Android refusing, or a core gone offline
        yield ()
        return
    try:
        yield tuple(cores)
    finally:
        os.sched_setaffinity(0, before)


def ort_affinities(cores: Sequence[int]) -> str:
    """onnxruntime's `session.intra_op_thread_affinities` for the pool threads (all but the
    calling thread): one core each, as 1-based logical processor ids."""
    return ";".join(str(core + 1) for core in cores[1:])
