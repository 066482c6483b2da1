"""How the connection to the coordinator is doing. An outage is logged once when it starts
(and once per other cause it shows, such as each address of a name that has two) and once
when it ends, not at every retry; and a
failed TLS handshake that no retry can fix (wrong CA, a certificate for another name, TLS
on one side only) is told apart from an outage and named with what to change. A
certificate outside its validity dates is an outage: a Pi without a clock battery boots
with the wrong time and corrects it later."""

from __future__ import annotations

import logging
import re
import socket
import ssl
import threading
import time

import grpc

__all__ = ["Link", "Misconfigured", "handshake_problem", "speaks_tls", "summary"]

log = logging.getLogger("ofa-agent")
_VERIFY_FAILED = re.compile(r"CERTIFICATE_VERIFY_FAILED: ([^:]+)")
_OUT_OF_DATE = re.compile(r"expired|not yet valid")


class Misconfigured(RuntimeError):
    """A setting the coordinator or the TLS handshake refuses: retrying will not help."""


def summary(exc: BaseException) -> str:
    """One line for a gRPC error (its str() is a multi-line dump)."""
    if isinstance(exc, grpc.RpcError) and hasattr(exc, "code"):
        text = f"{exc.code().name}: {exc.details()}"
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:400]


def speaks_tls(host: str, port: int, timeout_s: float = 5.0) -> bool:
    """Whether a TLS handshake with HOST:PORT completes (the certificate is not checked)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((host, port), timeout=timeout_s) as raw,
            context.wrap_socket(raw, server_hostname=host),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def handshake_problem(details: str, host: str, port: int, tls: bool) -> str | None:
    """What to change, when the details of an UNAVAILABLE call show a handshake that cannot
    succeed; None when the failure may pass (refused, unreachable, reset, timed out)."""
    address = f"{host}:{port}"
    if not tls:  # a TLS server drops a plaintext client; confirm it is TLS before giving up
        if "Socket closed" in details and speaks_tls(host, port):
            return (
                f"{address} speaks TLS and this agent does not: pass the coordinator's CA "
                "certificate with --tls-ca"
            )
        return None
    verify = _VERIFY_FAILED.search(details)
    if verify and not _OUT_OF_DATE.search(verify.group(1)):  # a clock not yet set may be why
        return (
            f"TLS: the certificate of {address} does not verify against --tls-ca "
            f"({verify.group(1).strip()}): pass the CA certificate that signed it"
        )
    if "Hostname Verification Check failed" in details:
        return (
            f"TLS: the certificate of {address} is not issued for {host!r}: connect by a "
            f"name its subjectAltName lists, or reissue it for {host}"
        )
    if "WRONG_VERSION_NUMBER" in details:
        return (
            f"TLS: {address} does not speak TLS: start the coordinator with --tls-cert and "
            "--tls-key, or drop --tls-ca to connect in plaintext"
        )
    return None


class Link:
    """The connection's state, shared by the main loop and the heartbeat thread."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._lock = threading.Lock()
        self._causes: set[str] = set()  # of the outage in progress
        self._since = 0.0

    def up(self) -> None:
        with self._lock:
            if not self._causes:
                return
            self._causes.clear()
            down_s = time.monotonic() - self._since
        log.info("coordinator %s answers again after %.0f s", self.address, down_s)

    def down(self, exc: grpc.RpcError) -> None:
        cause = summary(exc)
        with self._lock:
            if cause in self._causes:
                return
            if not self._causes:
                self._since = time.monotonic()
            self._causes.add(cause)
        log.warning(
            "no answer from coordinator %s (%s); retrying with backoff", self.address, cause
        )
