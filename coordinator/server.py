"""`ofa-coord serve`: the gRPC server process (asyncio), with TLS, message-size limits,
keepalive policy, the standard health service, and graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from coordinator.auth import TokenInterceptor
from coordinator.blobs import MAX_MODEL_BYTES, BlobStore
from coordinator.fleet import FleetService, FleetSettings
from coordinator.servicer import FleetServicer
from coordinator.store import Store
from proto.ofafleet.v1 import fleet_pb2_grpc as pb_grpc

__all__ = ["serve", "MAX_MESSAGE_BYTES", "SERVICE_NAME"]

log = logging.getLogger("ofa-coord")
MAX_MESSAGE_BYTES = 16 * 2**20
SERVICE_NAME = "ofafleet.v1.Fleet"


async def serve(db: Path, listen: str, settings: FleetSettings = FleetSettings(),
                tls: tuple[bytes, bytes] | None = None, max_model_bytes: int = MAX_MODEL_BYTES,
                grace_s: float = 5.0) -> None:
    """Serve until SIGTERM/SIGINT. Prints `listening on HOST:PORT` once bound (port 0 picks
    a free port)."""
    store = Store(db)
    fleet = FleetService(store, BlobStore(store, max_model_bytes), settings)
    server = grpc.aio.server(interceptors=[TokenInterceptor(store)], options=[
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
        ("grpc.http2.max_pings_without_data", 0)])
    pb_grpc.add_FleetServicer_to_server(FleetServicer(fleet), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            key, cert = tls
            port = server.add_secure_port(listen, grpc.ssl_server_credentials([(key, cert)]))
    except RuntimeError as exc:  # grpc's way of saying the address cannot be bound
        store.close()
        raise OSError(f"listen: cannot serve on {listen} ({exc})") from None
    await server.start()
    await fleet.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    host = listen.rsplit(":", 1)[0]
    print(f"listening on {host}:{port}", flush=True)
    log.info("serving %s on %s:%d (%s)", db, host, port, "TLS" if tls else "plaintext")

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutting down (grace %.0f s)", grace_s)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(grace_s)
    await fleet.stop()
    store.close()
    print("stopped", file=sys.stderr, flush=True)
