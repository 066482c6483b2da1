"""`ofa-coord devices`: the registered agents and their state."""

from __future__ import annotations

import json
import time

import click

from coordinator.cli.options import DB
from coordinator.state import Store
from coordinator.timeago import ago


@click.command()
@DB
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True
)
def devices(db: str, fmt: str) -> None:
    """List agents: status, labels, device, last seen, jobs done."""
    now = time.time()
    agents = Store(db).list_agents()  # online judged from the heartbeat's age
    if fmt == "json":
        click.echo(json.dumps(agents, indent=2))
        return
    if not agents:
        click.echo("no agents have registered")
        return
    click.echo(f"{'agent':<13} {'status':<8} {'labels':<20} {'device':<44} {'last seen':<10} jobs")
    for agent in agents:
        device = agent["device"]
        summary = " ".join(str(device[k]) for k in ("machine", "cpu_model") if k in device)
        summary += f" {device.get('logical_cores', '?')} cpus, {agent['threads']} thr"
        click.echo(
            f"{agent['id']:<13} {'online' if agent['online'] else 'offline':<8} "
            f"{','.join(agent['labels']):<20} {summary[:44]:<44} "
            f"{ago(now - agent['last_seen']):<10} {agent['jobs_done']}"
        )
