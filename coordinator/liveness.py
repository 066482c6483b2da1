"""An agent's state as the command line reads it: online only while the server says so and
its last heartbeat is recent. A stopped server never sweeps, so its flag alone can be stale."""

from __future__ import annotations

from coordinator.fleet import FleetSettings

__all__ = ["is_online", "ago"]

OFFLINE_AFTER_S = FleetSettings().offline_after_s  # the server's default window


def is_online(agent: dict, now: float) -> bool:
    return bool(agent["online"]) and now - agent["last_seen"] <= OFFLINE_AFTER_S


def ago(seconds: float) -> str:
    return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"
