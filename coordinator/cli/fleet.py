"""Commands that run and administer the fleet: serve, token, devices."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import click

from coordinator.server.fleet import SETTINGS_RANGES, FleetSettings
from coordinator.cli.options import FiniteFloat, db_option
from coordinator.output_files import Staged
from coordinator.state import Store
from coordinator.timeago import ago

DB = db_option(must_exist=True, help="The coordinator's SQLite file (blobs live beside it).")
NEW_DB = db_option(must_exist=False, help="The coordinator's SQLite file (created if missing).")


@click.command()
@NEW_DB
@click.option("--listen", default="127.0.0.1:50051", show_default=True,
              help="HOST:PORT to serve on (port 0 picks a free one).")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False),
              help="PEM certificate chain; with --tls-key serves TLS.")
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key.")
@click.option("--heartbeat-interval", type=FiniteFloat(*SETTINGS_RANGES["heartbeat_interval_s"]),
              default=FleetSettings.heartbeat_interval_s, show_default=True,
              help="Seconds between agent heartbeats.")
@click.option("--missed-heartbeats", type=click.IntRange(*SETTINGS_RANGES["missed_heartbeats"]),
              default=FleetSettings.missed_heartbeats, show_default=True,
              help="An agent silent this many intervals is offline; its leases are requeued.")
@click.option("--lease-seconds", type=FiniteFloat(*SETTINGS_RANGES["lease_seconds"]),
              default=FleetSettings.lease_seconds, show_default=True,
              help="Lease lifetime, renewed by heartbeats.")
@click.option("--max-model-mb", type=click.IntRange(min=1, max=64 * 1024), default=512,
              show_default=True)
@click.option("-v", "--verbose", is_flag=True, help="Log every registration and sweep.")
def serve(db: str, listen: str, tls_cert: str | None, tls_key: str | None,
          heartbeat_interval: float, missed_heartbeats: int, lease_seconds: float,
          max_model_mb: int, verbose: bool) -> None:
    """Run the coordinator's gRPC server until SIGTERM or Ctrl-C."""
    from coordinator.server.serve import serve as run_server  # grpc server imports only when serving

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    tls = (Path(tls_key).read_bytes(), Path(tls_cert).read_bytes()) if tls_cert else None
    settings = FleetSettings(heartbeat_interval_s=heartbeat_interval,
                             missed_heartbeats=missed_heartbeats, lease_seconds=lease_seconds)
    asyncio.run(run_server(Path(db), listen, settings, tls, max_model_mb * 2**20))


@click.group()
def token() -> None:
    """Create, list and revoke agent tokens."""


@token.command("create")
@NEW_DB
@click.option("--name", required=True, help="A name for the agent this token is for.")
@click.option("--agent", "agent_id", help="Bind it to this registered agent (token rotation: "
              "the agent keeps its id; revoke the old token).")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the token to this file (mode 600) instead of printing it.")
def token_create(db: str, name: str, agent_id: str | None, out: str | None) -> None:
    """Mint a token. It is shown once; the coordinator keeps only its hash."""
    store = Store(db)
    if not out:
        click.echo(store.create_token(name, agent_id))
        return
    # The secret reaches the disk (mode 600, synced) before the token is committed, and the
    # file takes its name only after: an unwritable or full --out creates no token.
    with Staged(out, private=True) as staged, store.transaction():
        staged.write(store.create_token(name, agent_id) + "\n")
    click.echo(f"token {name!r} written to {out}")


@token.command("revoke")
@DB
@click.option("--name", required=True)
def token_revoke(db: str, name: str) -> None:
    """Refuse this token from now on."""
    Store(db).revoke_token(name)
    click.echo(f"token {name!r} revoked")


@token.command("list")
@DB
def token_list(db: str) -> None:
    """Names, states and bound agents of all tokens (never the secrets)."""
    for row in Store(db).list_tokens():
        state = "revoked" if row["revoked_at"] else "active"
        click.echo(f"{row['name']:<24} {state:<8} agent {row['agent_id'] or '-'}")


@click.command()
@DB
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
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
        click.echo(f"{agent['id']:<13} {'online' if agent['online'] else 'offline':<8} "
                   f"{','.join(agent['labels']):<20} {summary[:44]:<44} "
                   f"{ago(now - agent['last_seen']):<10} {agent['jobs_done']}")
