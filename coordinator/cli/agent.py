"""`ofa-coord agent readmit`: an operator's decisions about one agent."""

from __future__ import annotations

import click

from coordinator.cli.options import DB
from coordinator.state import Store


@click.group()
def agent() -> None:
    """Manage one agent (see `ofa-coord devices` for their ids)."""


@agent.command("readmit")
@DB
@click.argument("agent_id")
def agent_readmit(db: str, agent_id: str) -> None:
    """Clear AGENT_ID's quarantine: its results count in latency tables again."""
    if Store(db).readmit_agent(agent_id):
        click.echo(f"agent {agent_id} readmitted")
    else:
        click.echo(f"agent {agent_id} was not quarantined")
