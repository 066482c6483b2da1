"""`ofa-coord devices`: the registered agents and their state."""

from __future__ import annotations

import time

import click

from agent.output import Column, emit, format_option
from coordinator.cli.options import DB
from coordinator.state import Store
from coordinator.timeago import ago


def _device_summary(device: dict) -> str:
    return " ".join(str(device[k]) for k in ("machine", "cpu_model") if k in device) + (
        f" {device.get('logical_cores', '?')} cpus"
    )


@click.command()
@DB
@format_option(csv=True)
def devices(db: str, fmt: str) -> None:
    """List agents: status, labels, device, last seen, jobs done."""
    now = time.time()
    agents = Store(db).list_agents()  # online judged from the heartbeat's age
    columns = [
        Column("agent", "id"),
        Column("status", "online", lambda online: "online" if online else "offline"),
        Column("labels", "labels", ",".join),
        Column("device", "device", _device_summary),
        Column("threads", "threads", align="right"),
        Column("last seen", "last_seen", lambda t: ago(now - t)),
        Column("jobs", "jobs_done", align="right"),
    ]
    emit(agents, fmt, columns, empty="no agents have registered")
