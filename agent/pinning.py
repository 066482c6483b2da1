"""Pinning a measurement's threads to fixed cores, where the OS allows it.

A thread the scheduler moves between cores loses its caches and lands on whichever core is
free, fast or slow (big.LITTLE phones); nn-Meter's maintainers and TFLite's benchmark tool
both pin. The measuring (calling) thread goes on the first chosen core and each onnxruntime
pool thread on one of the others. The last cores are chosen: the OS tends to serve
interrupts on the first ones.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence

__all__ = ["choose_cores", "pinned", "ort_affinities"]


def choose_cores(threads: int) -> tuple[int, ...]:
    """The cores `threads` measuring threads are pinned to; () where the OS cannot pin or
    the process may use fewer cores than that."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no affinity call
        return ()
    return tuple(allowed[-threads:]) if len(allowed) >= threads else ()


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
