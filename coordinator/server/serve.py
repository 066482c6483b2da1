"""`ofa-coord serve`: the gRPC server process (asyncio), with TLS, message-size limits,
keepalive policy, the standard health service, and graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import shutil
import signal
import ssl
import sys
import tempfile
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from coordinator.server.auth import TokenInterceptor
from coordinator.server.fleet import FleetService, FleetSettings
from coordinator.server.limits import decode_spec
from coordinator.server.metrics import FleetMetrics, TimingInterceptor
from coordinator.server.servicer import FleetServicer, add_to_server
from coordinator.state import (
    FILES_BESIDE_SQLITE,
    MAX_MODEL_BYTES,
    BlobStore,
    Store,
    is_postgres_url,
)

__all__ = ["serve", "parse_listen", "check_tls", "tls_context", "MAX_MESSAGE_BYTES", "SERVICE_NAME"]

log = logging.getLogger("ofa-coord")
MAX_MESSAGE_BYTES = 16 * 2**20
SERVICE_NAME = "ofafleet.v1.Fleet"
DEFAULT_SETTINGS = FleetSettings()  # frozen: one instance is safe to share as a default


def parse_listen(listen: str, option: str = "--listen") -> tuple[str, int]:
    """HOST:PORT (HOST may be empty, or [v6]); refused unless PORT is 0..65535 written out
    (grpc would take a missing or out-of-range port as 443 or a random one)."""
    host, colon, port = listen.rpartition(":")
    bare_v6 = ":" in host and not (host.startswith("[") and host.endswith("]"))
    if not colon or bare_v6 or not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(
            f"{option}: expected HOST:PORT with a port in 0..65535, got {listen[:100]!r}"
        )
    return host, int(port)


def tls_context(key: bytes, cert: bytes) -> ssl.SSLContext:
    """A server context for the PEM pair (ssl reads files only: a private folder holds them
    while it loads)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as folder:
        cert_file, key_file = Path(folder, "cert.pem"), Path(folder, "key.pem")
        cert_file.write_bytes(cert)
        key_file.write_bytes(key)
        context.load_cert_chain(cert_file, key_file)
    return context


def check_tls(key: bytes, cert: bytes) -> None:
    """Refuse a key/certificate pair that TLS could not serve, saying why (grpc would only
    fail later, at each handshake or with a message that names nothing)."""
    if b"PRIVATE KEY-----" in cert and b"CERTIFICATE-----" in key:
        raise ValueError(
            "--tls-cert holds a private key and --tls-key a certificate: they are swapped"
        )
    if b"-----BEGIN CERTIFICATE-----" not in cert:
        raise ValueError("--tls-cert: not a PEM certificate (no BEGIN CERTIFICATE block)")
    if b"PRIVATE KEY-----" not in key:
        raise ValueError("--tls-key: not a PEM private key (no BEGIN ... PRIVATE KEY block)")
    try:
        tls_context(key, cert)
    except ssl.SSLError as exc:
        raise ValueError(
            f"--tls-cert/--tls-key: the key does not match the certificate, "
            f"or one is damaged ({exc.reason or exc})"
        ) from None


def _settle_files(store: Store, files: Path | None) -> None:
    """Record `--files` for the fleet the first time; refuse another folder later, since
    every coordinator and command must find the same files."""
    if files is None:
        return
    recorded = store.set_files_root(files)
    if recorded != files.resolve():
        raise ValueError(
            f"--files: this fleet keeps its files in {recorded}; give that folder "
            "(reached at the same path) or leave --files out"
        )


def _remove_database(path: Path, blobs: Path) -> None:
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        file.unlink(missing_ok=True)
    shutil.rmtree(blobs, ignore_errors=True)


async def serve(
    db: str | Path,
    listen: str,
    settings: FleetSettings = DEFAULT_SETTINGS,
    tls: tuple[bytes, bytes] | None = None,
    max_model_bytes: int = MAX_MODEL_BYTES,
    grace_s: float = 5.0,
    http: str | None = None,
    files: Path | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT. Prints `listening on HOST:PORT` once bound (port 0 picks
    a free port), and `http on HOST:PORT` for the metrics and page when `http` is given. A
    port in use, a bad address or TLS pair, or a file that is not a fleet database raise
    before anything is served."""
    host, _ = parse_listen(listen)
    http_host, http_port = parse_listen(http, "--http") if http else ("", 0)
    if tls is not None:
        check_tls(*tls)
    if files is not None and not is_postgres_url(db):  # refused before a file is created
        raise ValueError(FILES_BESIDE_SQLITE)
    created = not is_postgres_url(db) and not Path(db).exists()
    store = Store(db)
    try:
        _settle_files(store, files)
        blobs = BlobStore(store, max_model_bytes)
    except BaseException:
        store.close()
        raise
    fleet = FleetService(store, blobs, settings, check_spec=decode_spec)
    metrics = FleetMetrics(Store(db)) if http else None
    timing = [TimingInterceptor(metrics.rpc_seconds)] if metrics else []
    server = grpc.aio.server(
        interceptors=[*timing, TokenInterceptor(store, fleet.db)],
        options=[
            ("grpc.so_reuseport", 0),  # a second server on a port in use fails instead of sharing
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
            ("grpc.http2.max_pings_without_data", 0),
        ],
    )
    add_to_server(FleetServicer(fleet), server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            key, cert = tls
            port = server.add_secure_port(listen, grpc.ssl_server_credentials([(key, cert)]))
    except RuntimeError as exc:  # grpc's way of saying the address cannot be bound
        await fleet.stop()
        store.close()
        if created:  # a failed start leaves no new database behind
            _remove_database(Path(db), blobs.root)
        raise OSError(f"listen: cannot serve on {listen} ({exc})") from None
    web = None
    if metrics is not None:
        from coordinator.server.web import WebServer

        try:
            web = WebServer(db, http_host, http_port, metrics, tls)
        except OSError:
            await fleet.stop()
            metrics.store.close()
            store.close()
            raise
    await server.start()
    await fleet.start()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    print(f"listening on {host}:{port}", flush=True)
    if web is not None:
        web.start()
        print(f"http on {http_host}:{web.port}", flush=True)
    log.info("serving %s on %s:%d (%s)", store.location, host, port, "TLS" if tls else "plaintext")

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    log.info("shutting down (grace %.0f s)", grace_s)
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    await server.stop(grace_s)
    if web is not None:
        web.stop()
    await fleet.stop()
    store.close()
    print("stopped", file=sys.stderr, flush=True)
