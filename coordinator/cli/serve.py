"""`ofa-coord serve`: run the coordinator's gRPC server."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import click

from coordinator.cli.options import NEW_DB, FiniteFloat
from coordinator.server.fleet import SETTINGS_RANGES, FleetSettings

MISSED_RANGE = SETTINGS_RANGES["missed_heartbeats"]


@click.command()
@NEW_DB
@click.option(
    "--listen",
    default="127.0.0.1:50051",
    show_default=True,
    help="HOST:PORT to serve on (port 0 picks a free one).",
)
@click.option(
    "--tls-cert",
    type=click.Path(exists=True, dir_okay=False),
    help="PEM certificate chain; with --tls-key serves TLS.",
)
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False), help="PEM private key.")
@click.option(
    "--heartbeat-interval",
    type=FiniteFloat(*SETTINGS_RANGES["heartbeat_interval_s"]),
    default=FleetSettings.heartbeat_interval_s,
    show_default=True,
    help="Seconds between agent heartbeats.",
)
@click.option(
    "--missed-heartbeats",
    type=click.IntRange(int(MISSED_RANGE[0]), int(MISSED_RANGE[1])),
    default=FleetSettings.missed_heartbeats,
    show_default=True,
    help="An agent silent this many intervals is offline; its leases are requeued.",
)
@click.option(
    "--lease-seconds",
    type=FiniteFloat(*SETTINGS_RANGES["lease_seconds"]),
    default=FleetSettings.lease_seconds,
    show_default=True,
    help="Lease lifetime, renewed by heartbeats.",
)
@click.option(
    "--remeasure-cooldown",
    type=FiniteFloat(*SETTINGS_RANGES["remeasure_cooldown_s"]),
    default=FleetSettings.remeasure_cooldown_s,
    show_default=True,
    help="Seconds a disturbed measurement's job waits before it is measured again "
    "(doubling for each next disturbed result).",
)
@click.option(
    "--max-model-mb",
    type=click.IntRange(min=1, max=64 * 1024),
    default=512,
    show_default=True,
    help="Largest model (MiB) the coordinator stores for its agents; larger ones are refused.",
)
@click.option(
    "--http",
    metavar="HOST:PORT",
    help="Also serve Prometheus metrics (/metrics) and a read-only status page (/) here; "
    "HTTPS with --tls-cert. Off by default. The page needs no token: keep it on loopback "
    "or a trusted network.",
)
@click.option(
    "--files",
    type=click.Path(file_okay=False),
    help="Folder for the model blobs and predictors of a PostgreSQL fleet, needed the "
    "first time: one every coordinator and command reaches at this path (a shared volume); "
    "the database records it for them. An SQLite fleet keeps them beside its --db.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log every registration and sweep.")
def serve(
    db: str,
    listen: str,
    tls_cert: str | None,
    tls_key: str | None,
    heartbeat_interval: float,
    missed_heartbeats: int,
    lease_seconds: float,
    remeasure_cooldown: float,
    max_model_mb: int,
    http: str | None,
    files: str | None,
    verbose: bool,
) -> None:
    """Run the coordinator's gRPC server until SIGTERM or Ctrl-C."""
    from coordinator.server.serve import serve as run_server  # grpc loads only for serving

    if bool(tls_cert) != bool(tls_key):
        raise click.UsageError("--tls-cert and --tls-key go together")
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
    )
    tls = (
        (Path(tls_key).read_bytes(), Path(tls_cert).read_bytes()) if tls_cert and tls_key else None
    )
    settings = FleetSettings(
        heartbeat_interval_s=heartbeat_interval,
        missed_heartbeats=missed_heartbeats,
        lease_seconds=lease_seconds,
        remeasure_cooldown_s=remeasure_cooldown,
    )
    asyncio.run(
        run_server(
            db,
            listen,
            settings,
            tls,
            max_model_mb * 2**20,
            http=http,
            files=Path(files) if files else None,
        )
    )
