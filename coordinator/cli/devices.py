"""`ofa-coord devices`: the registered agents and their state."""

from __future__ import annotations

import time

import click

from agent.output import Column, emit, format_option
from coordinator.cli.options import DB
from coordinator.services.fleet_status import agent_status
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
    """List agents: status (online, offline, or quarantined: left out of latency tables
    until `ofa-coord agent readmit`), labels, device, last seen, jobs done. JSON gives a
    quarantined agent's reason and peer ratio under `quarantine`."""
    now = time.time()
    agents = [  # online judged from the heartbeat's age
        {**agent, "status": agent_status(agent)} for agent in Store(db).list_agents()
    ]
    columns = [
        Column("agent", "id"),
        Column("status", "status"),
        Column("labels", "labels", ",".join),
        Column("device", "device", _device_summary),
        Column("threads", "threads", align="right"),
        Column("last seen", "last_seen", lambda t: ago(now - t)),
        Column("jobs", "jobs_done", align="right"),
    ]
    emit(agents, fmt, columns, empty="no agents have registered")
