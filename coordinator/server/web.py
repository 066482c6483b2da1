"""The coordinator's optional HTTP side (`serve --http HOST:PORT`): Prometheus metrics and
a small read-only page of the fleet, on their own address, behind the same TLS as gRPC
when that is configured.

Routes (GET and HEAD only; anything else is refused with 405):
- `/`: the page (`page.html`), which draws itself from `/api/status` every few seconds;
- `/api/status`: what `ofa-coord status --format json` prints, plus `luts` and `predictors`:
  [label, version] of each device with measured LUT entries (the version is their count)
  and with trained latency predictors;
- `/metrics`: Prometheus text format (`metrics.py`);
- `/plots/predictor/<label>.png`: predicted against measured latency of a device's
  held-out subnets, by every predictor trained for it (`ofa-coord predictor eval --plot`);
- `/plots/lut/<label>.png`: a device's LUT entries by stage, kernel, expand ratio and
  resolution (median and p10-p90 ms of each group), from its accepted LUT results.
The page and its data need no token: serve it on loopback, or on a network you trust.
"""

from __future__ import annotations

import logging
import re
import sys
import tempfile
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path

from agent import strict_json
from coordinator.server.metrics import CONTENT_TYPE, FleetMetrics
from coordinator.server.serve import tls_context
from coordinator.services.fleet_status import fleet_status
from coordinator.services.lut_compare import DIMENSIONS
from coordinator.services.lut_export import lut_groups
from coordinator.services.plots import lut_by_group
from coordinator.services.predictors import (
    device_predictors,
    held_out_subnets,
    latest_trained_target,
    plot_predictors,
    predictors_version,
    scoring_target,
)
from coordinator.state import LABEL, Devices

__all__ = ["WebServer"]

log = logging.getLogger("ofa-coord")
# pyplot is not thread-safe, and the page fetches its plots at once: one drawing at a time
_PLOTTING = threading.Lock()
_PLOT = re.compile(rf"^/plots/(predictor|lut)/({LABEL.pattern})\.png$")


class WebServer:
    """Serves the routes above, on threads of its own, from the metrics' database
    connection (closed by `stop`)."""

    def __init__(
        self,
        db: str | Path,
        host: str,
        port: int,
        metrics: FleetMetrics,
        tls: tuple[bytes, bytes] | None = None,
    ) -> None:
        self.db, self.metrics = db, metrics
        self.store, self.lock = metrics.store, metrics.lock
        self.page = resources.files("coordinator.server").joinpath("page.html").read_bytes()
        handler = type("Handler", (_Handler,), {"web": self})
        try:
            self.httpd = _HTTPServer((host.strip("[]"), port), handler)
        except OSError as exc:
            raise OSError(f"--http: cannot serve on {host}:{port} ({exc.strerror})") from None
        if tls is not None:
            self.httpd.socket = tls_context(*tls).wrap_socket(  # handshakes on the
                self.httpd.socket, server_side=True, do_handshake_on_connect=False
            )  # request's thread, so a slow client never holds up the accepting one
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="http", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.store.close()

    # ------------------------------------------------------------------- answers
    def status(self) -> bytes:
        with self.lock:
            status = fleet_status(self.store, time.time())
            labels = sorted(
                {label for agent in status["agents"] for label in agent["labels"]}
                | {row["label"] for row in status["labels"]}
            )
            luts = {label: self.store.accepted_count(Devices(label), "lut") for label in labels}
        # the count makes a LUT plot's address change, and the page fetch it, as entries arrive
        status["luts"] = [[label, count] for label, count in luts.items() if count]
        # and the time of the latest training does so for a predictor plot
        status["predictors"] = [
            [label, version] for label in labels if (version := predictors_version(self.db, label))
        ]
        return strict_json.dumps(status).encode()

    def predictor_plot(self, label: str) -> bytes:
        """The PNG; ValueError (said as 404) when the device has no predictor or too few
        held-out subnets."""
        target = latest_trained_target(self.db, label)
        if target is None:
            raise ValueError(f"device: no predictor trained for {label!r}")
        models = device_predictors(self.db, label, target=target)
        with self.lock:
            held_out = held_out_subnets(self.store, label, scoring_target(models.values(), target))
        with _PLOTTING, tempfile.TemporaryDirectory() as folder:
            plot = plot_predictors(f"{label}, {target}", held_out, models, Path(folder, "p.png"))
            return plot.read_bytes()

    def lut_plot(self, label: str) -> bytes:
        """The PNG of the device's latest LUT target; ValueError (said as 404) while the device
        has no measured LUT entry."""
        with self.lock:
            target, groups = lut_groups(self.store, label)
        with _PLOTTING, tempfile.TemporaryDirectory() as folder:
            plot = lut_by_group(f"{label}, {target}", groups, DIMENSIONS, Path(folder, "lut.png"))
            return plot.read_bytes()


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        """A client that hung up or spoke plaintext to TLS: one debug line, no traceback."""
        log.debug("http: a request from %s failed: %s", client_address[0], sys.exc_info()[1])


class _Handler(BaseHTTPRequestHandler):
    web: WebServer
    server_version = "ofa-coord"

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                self._send(self.web.page, "text/html; charset=utf-8")
            elif path == "/api/status":
                self._send(self.web.status(), "application/json")
            elif path == "/metrics":
                self._send(self.web.metrics.exposition(), CONTENT_TYPE)
            elif match := _PLOT.match(path):
                plot = self.web.predictor_plot if match[1] == "predictor" else self.web.lut_plot
                self._send(plot(match[2]), "image/png")
            else:
                self._fail(HTTPStatus.NOT_FOUND, f"{path[:100]}: no such page")
        except ValueError as exc:  # what was asked for does not exist (yet)
            self._fail(HTTPStatus.NOT_FOUND, str(exc))
        except Exception as exc:  # a page must never take the coordinator down
            log.exception("http %s", path[:100])
            self._fail(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(exc).__name__}: {exc}")

    def do_HEAD(self) -> None:
        self.do_GET()

    def _refuse(self) -> None:
        self._fail(HTTPStatus.METHOD_NOT_ALLOWED, "read-only: GET and HEAD only")

    do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    def _send(self, body: bytes, content_type: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _fail(self, status: HTTPStatus, message: str) -> None:
        body = (message + "\n").encode()
        self.send_response(status)
        if status == HTTPStatus.METHOD_NOT_ALLOWED:
            self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:
        log.debug("http %s", format % args)
