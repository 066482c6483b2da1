"""The one place the agent retries RPCs: exponential backoff with full jitter.

Only UNAVAILABLE and DEADLINE_EXCEEDED are retried (the coordinator is down or slow);
anything else is an answer and goes straight to the caller. Each retry is a debug line;
the outage itself is logged once by `agent.link`.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

__all__ = ["Backoff", "call_with_retry", "RETRYABLE"]

T = TypeVar("T")
RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
log = logging.getLogger("ofa-agent")


@dataclass(frozen=True)
class Backoff:
    """Delays of 1 s doubling to `max_s`, each drawn uniformly from [0, delay]."""

    initial_s: float = 1.0
    max_s: float = 30.0
    multiplier: float = 2.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return rng.uniform(0, min(self.max_s, self.initial_s * self.multiplier**attempt))


def call_with_retry(
    call: Callable[[], T],
    what: str,
    stop: threading.Event,
    backoff: Backoff = Backoff(),
    rng: random.Random | None = None,
    max_attempts: int | None = None,
) -> T:
    """Run `call` until it succeeds, fails with a non-retryable status, `stop` is set or
    `max_attempts` calls have failed (then the last error is raised)."""
    rng = rng or random.Random()
    attempt = 0
    while True:
        try:
            return call()
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            out_of_attempts = max_attempts is not None and attempt + 1 >= max_attempts
            if code not in RETRYABLE or stop.is_set() or out_of_attempts:
                raise
            pause = backoff.delay(attempt, rng)
            log.debug("%s: %s; retrying in %.1f s", what, code.name, pause)
            attempt += 1
            if stop.wait(pause):
                raise
