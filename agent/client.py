"""The agent's view of the coordinator: a channel and a stub per coordinator address,
deadlines on every call, and retries only through `agent.retry`. Callers see
`Misconfigured` (and its `AuthError`), `Forgotten` and `Rejected`, not gRPC codes; outages
are logged by `agent.link`.

Several coordinators sharing one database serve the same fleet: a call that finds its
coordinator gone is retried on the next one, where the agent's registration and leases
are as valid. (A DNS name that resolves to several addresses is left to gRPC's own
resolver, which tries each address of a name; untested here.)"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import grpc

from agent.link import Link, Misconfigured, handshake_problem
from agent.retry import RETRYABLE, call_with_retry
from agent.settings import parse_address, parse_addresses
from proto.ofafleet.v1 import fleet_pb2 as pb
from proto.ofafleet.v1 import fleet_pb2_grpc as pb_grpc

__all__ = [
    "AuthError",
    "Forgotten",
    "Misconfigured",
    "Rejected",
    "FleetClient",
    "is_loopback",
    "MAX_MESSAGE_BYTES",
    "CALL_TIMEOUT_S",
]

MAX_MESSAGE_BYTES = 16 * 2**20
CALL_TIMEOUT_S = 15.0
CHUNK_BYTES = 2 * 2**20
log = logging.getLogger("ofa-agent")


class AuthError(Misconfigured):
    """The coordinator refused this agent's token: retrying will not help. `wrong_agent`:
    the token is valid, but bound to another agent than the one the request names."""

    def __init__(self, message: str, wrong_agent: bool = False) -> None:
        super().__init__(message)
        self.wrong_agent = wrong_agent


class Forgotten(RuntimeError):
    """The coordinator does not know this agent (any more): register again."""


class Rejected(RuntimeError):
    """The coordinator does not know the lease or blob a request names."""


def is_loopback(address: str) -> bool:
    """Whether HOST:PORT names this machine (localhost, 127.0.0.0/8, ::1)."""
    host, _ = parse_address(address)
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _translate(exc: grpc.RpcError) -> Exception:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
        return AuthError(
            f"coordinator refused the token: {details}",
            wrong_agent=code == grpc.StatusCode.PERMISSION_DENIED,
        )
    if code == grpc.StatusCode.NOT_FOUND:
        return Forgotten(details)
    if code == grpc.StatusCode.FAILED_PRECONDITION:
        return Rejected(details)
    return exc


@dataclass
class _Coordinator:
    """One coordinator address and the channel to it (kept open while the agent runs:
    closing it would cancel another thread's call in flight)."""

    address: str
    host: str
    port: int
    channel: grpc.Channel
    stub: pb_grpc.FleetStub
    link: Link


class FleetClient:
    def __init__(
        self,
        address: str,
        token: str,
        stop: threading.Event,
        tls_ca: bytes | None = None,
        insecure: bool = False,
        timeout_s: float = CALL_TIMEOUT_S,
    ) -> None:
        """`address` is HOST:PORT, or several comma-separated of coordinators that share
        one database."""
        addresses = parse_addresses(address)
        for one in addresses:
            if tls_ca is None and not insecure and not is_loopback(one):
                raise ValueError(
                    f"--coordinator: {one} is not a loopback address; use --tls-ca "
                    "to connect with TLS, or --insecure to send the token in plaintext"
                )
        options = [
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 60_000),
            ("grpc.keepalive_timeout_ms", 20_000),
        ]
        self.tls = tls_ca is not None
        self.coordinators = []
        for one in addresses:
            channel = (
                grpc.secure_channel(one, grpc.ssl_channel_credentials(tls_ca), options)
                if self.tls
                else grpc.insecure_channel(one, options)
            )
            host, port = parse_address(one)
            self.coordinators.append(
                _Coordinator(one, host, port, channel, pb_grpc.FleetStub(channel), Link(one))
            )
        self.current = 0  # the coordinator calls go to
        self._moving = threading.Lock()
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.timeout_s = timeout_s
        self.stop = stop

    def close(self) -> None:
        for coordinator in self.coordinators:
            coordinator.channel.close()

    def _move_on(self, index: int) -> None:
        """After an outage of coordinator `index`, send calls to the next one (once, however
        many threads met the outage)."""
        with self._moving:
            if len(self.coordinators) < 2 or self.current != index:
                return
            self.current = (index + 1) % len(self.coordinators)
            log.warning(
                "coordinator %s is unreachable; moving to %s",
                self.coordinators[index].address,
                self.coordinators[self.current].address,
            )

    def _observed(self, call):
        """Run one attempt, `call(stub)`, on the current coordinator; tell its link how it
        went, move on after an outage, and stop at a handshake that cannot succeed rather
        than retrying it."""
        index = self.current
        coordinator = self.coordinators[index]
        try:
            reply = call(coordinator.stub)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            if code == grpc.StatusCode.UNAVAILABLE:
                problem = handshake_problem(
                    exc.details() or "", coordinator.host, coordinator.port, self.tls
                )
                if problem:
                    raise Misconfigured(problem) from None
            if code in RETRYABLE:
                coordinator.link.down(exc)
                self._move_on(index)
            raise
        coordinator.link.up()
        return reply

    def _call(self, name: str, request, retry: bool = True, max_attempts: int | None = None):
        def attempt(stub: pb_grpc.FleetStub):
            return getattr(stub, name)(request, timeout=self.timeout_s, metadata=self.metadata)

        call = lambda: self._observed(attempt)  # noqa: E731
        try:
            if not retry:
                return call()
            if max_attempts is not None:  # also while stopping: a few tries, then give up
                return call_with_retry(call, name, threading.Event(), max_attempts=max_attempts)
            return call_with_retry(call, name, self.stop)
        except grpc.RpcError as exc:
            raise _translate(exc) from None

    def register(
        self, agent_id: str, labels: Sequence[str], device: dict, threads: int, version: str
    ) -> pb.RegisterResponse:
        """Register; a request the coordinator calls invalid is built from this agent's
        settings (its labels), so it is a `Misconfigured`, not something to retry."""
        request = pb.RegisterRequest(
            agent_id=agent_id,
            labels=list(labels),
            device=pb.DeviceInfo(**device),
            agent_version=version,
            threads=threads,
        )
        try:
            return self._call("Register", request)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise Misconfigured(
                    f"coordinator refused the registration: {exc.details()}"
                ) from None
            raise

    def heartbeat(
        self, agent_id: str, lease_ids: Sequence[str], telemetry: dict
    ) -> pb.HeartbeatResponse:
        request = pb.HeartbeatRequest(
            agent_id=agent_id, lease_ids=list(lease_ids), telemetry=pb.Telemetry(**telemetry)
        )
        return self._call("Heartbeat", request, retry=False)

    def lease_jobs(self, agent_id: str, max_jobs: int, wait_s: float) -> list[pb.Job]:
        """Long-poll for jobs; returns early (with nothing) when `stop` is set."""
        request = pb.LeaseJobsRequest(agent_id=agent_id, max_jobs=max_jobs, wait_s=wait_s)

        def poll(stub: pb_grpc.FleetStub) -> pb.LeaseJobsResponse:
            future = stub.LeaseJobs.future(
                request, timeout=wait_s + self.timeout_s, metadata=self.metadata
            )
            while True:  # returns the moment the answer arrives; checks `stop` every 0.1 s
                try:
                    return future.result(timeout=0.1)
                except grpc.FutureTimeoutError:
                    if self.stop.is_set():
                        future.cancel()
                        return pb.LeaseJobsResponse()

        try:
            return list(call_with_retry(lambda: self._observed(poll), "LeaseJobs", self.stop).jobs)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.CANCELLED and self.stop.is_set():
                return []
            raise _translate(exc) from None

    def read_blob(self, digest: str, size: int) -> bytes:
        """The whole blob, read in chunks (verification is the cache's job)."""
        chunks, offset = [], 0
        while offset < size:
            reply = self._call(
                "ReadBlob", pb.ReadBlobRequest(digest=digest, offset=offset, limit=CHUNK_BYTES)
            )
            if not reply.data:
                raise ValueError(f"blob {digest}: coordinator sent no data at offset {offset}")
            chunks.append(reply.data)
            offset += len(reply.data)
        return b"".join(chunks)

    def report(self, agent_id: str, job: pb.Job, result: pb.Result) -> pb.ReportResultResponse:
        """Report a result; once stopping, only a few tries are made before giving up."""
        request = pb.ReportResultRequest(
            agent_id=agent_id, job_id=job.job_id, lease_id=job.lease_id, result=result
        )
        return self._call("ReportResult", request, max_attempts=3 if self.stop.is_set() else None)
