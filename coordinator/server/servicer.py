"""The gRPC servicer: it only translates. Each RPC checks its request against
`coordinator/server/limits.py`, turns protobuf into plain values, calls `FleetService`, and maps
domain errors to status codes. Requests too large for their method, or not protobuf, are
refused before they are decoded."""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass

import grpc
import numpy as np

from agent.stats import summarize
from coordinator.server import limits
from coordinator.server.auth import caller
from coordinator.server.fleet import FleetService
from coordinator.state import (
    REPORTED_AS_IS,
    STORAGE_ERRORS,
    Forbidden,
    NotFound,
    Token,
    UnknownAgent,
    is_transient,
    storage_error_name,
)
from proto.ofafleet.v1 import fleet_pb2 as pb
from proto.ofafleet.v1 import fleet_pb2_grpc as pb_grpc

__all__ = ["FleetServicer", "add_to_server", "result_to_dict"]

_STATUS = {
    pb.RESULT_STATUS_OK: "ok",
    pb.RESULT_STATUS_FAILED: "failed",
    pb.RESULT_STATUS_RELEASED: "released",
    pb.RESULT_STATUS_DISTURBED: "disturbed",
}
# NOT_FOUND is kept for "this agent is not registered" (the agent registers again); any other
# unknown thing (a lease, a blob) is a failed precondition of that one request.
_ERRORS = (
    (UnknownAgent, grpc.StatusCode.NOT_FOUND),
    (NotFound, grpc.StatusCode.FAILED_PRECONDITION),
    (Forbidden, grpc.StatusCode.PERMISSION_DENIED),
    (ValueError, grpc.StatusCode.INVALID_ARGUMENT),
)
log = logging.getLogger("ofa-coord")


def _fields(message, with_zeros: bool = False) -> dict:
    """A flat message as a dict of Python values (int64 stays int, unlike MessageToDict);
    unset optional fields are left out, and zeros too unless asked for."""
    if with_zeros:
        return {
            f.name: list(v) if f.is_repeated else v
            for f in message.DESCRIPTOR.fields
            for v in [getattr(message, f.name)]
        }
    return {f.name: list(v) if f.is_repeated else v for f, v in message.ListFields()}


def result_to_dict(result: pb.Result, samples: np.ndarray) -> dict:
    """The measurement fields the store keeps (`samples`, the samples_ns as int64;
    telemetry as dicts)."""
    return {
        "message": result.message,
        "samples_ns": samples,
        **{name: getattr(result, name) for name in REPORTED_AS_IS},
        "before": _fields(result.before),
        "after": _fields(result.after),
        "runtime_versions": dict(result.runtime_versions),
        "drift": _fields(result.drift, with_zeros=True) if result.HasField("drift") else None,
        "evidence": _fields(result.evidence) if result.HasField("evidence") else None,
        "conditions": (
            _fields(result.conditions, with_zeros=True) if result.HasField("conditions") else None
        ),
        "profile": (
            {
                "runs": result.profile.runs,
                "nodes": [_fields(node, with_zeros=True) for node in result.profile.nodes],
            }
            if result.HasField("profile")
            else None
        ),
    }


def _checked_result(request: pb.ReportResultRequest) -> dict:
    """The result as the store takes it, with its statistics: the work of up to MAX_SAMPLES
    samples is done here, off the event loop and off the store's thread."""
    samples = np.array(request.result.samples_ns, dtype="<i8")  # one C copy, no Python ints
    limits.check_report(request, samples)
    result = result_to_dict(request.result, samples)
    result["stats"] = summarize(samples) if samples.size else {}
    return result


@dataclass(frozen=True)
class _Refused:
    """Stands for a request refused before decoding: too large for its method, or bytes
    that are not its message."""

    reason: str


def _lenient(deserialize, method: str):
    """A deserializer that refuses a request larger than its method needs before decoding
    it (millions of tiny strings take the event loop a second to decode) and bytes that do
    not decode, with one warning line (grpc would log a traceback). The handler gets
    `_Refused`, which it answers with INVALID_ARGUMENT."""
    limit = limits.MAX_REQUEST_BYTES[method]

    def decode(data: bytes):
        if len(data) > limit:
            return _Refused(f"request: {len(data)} bytes, at most {limit} for {method}")
        try:
            return deserialize(data)
        except Exception as exc:  # protobuf's DecodeError, whatever its module
            log.warning(
                "%s: undecodable request of %d bytes (%s)", method, len(data), type(exc).__name__
            )
            return _Refused(f"request: not a valid {method} message")

    return decode


def add_to_server(servicer: FleetServicer, server) -> None:
    """Like the generated add_FleetServicer_to_server, with lenient deserializers."""
    service = pb.DESCRIPTOR.services_by_name["Fleet"]
    handlers = {
        method.name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, method.name),
            request_deserializer=_lenient(
                getattr(pb, method.input_type.name).FromString, method.name
            ),
            response_serializer=getattr(pb, method.output_type.name).SerializeToString,
        )
        for method in service.methods
    }
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )


def _rpc(handler):
    """Hand the handler the caller's token (resolved by the interceptor) and map domain
    errors to gRPC status codes (with details cut short: they may quote what the client
    sent)."""

    @functools.wraps(handler)
    async def wrapper(self, request, context):
        token = caller()
        if isinstance(request, _Refused):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
        try:
            return await handler(self, request, token)
        except tuple(error for error, _ in _ERRORS) as exc:
            code = next(code for error, code in _ERRORS if isinstance(exc, error))
            await context.abort(code, limits.clip(str(exc), 300))
        except STORAGE_ERRORS as exc:  # transient ones (a CLI holding the write lock, a
            # disk the operator can free): the agent retries and keeps its result
            name = storage_error_name(exc)
            transient = is_transient(exc)
            (log.warning if name.startswith("SQLITE_BUSY") else log.error)(
                "%s: the database failed: %s (%s)", handler.__name__, exc, name or "?"
            )
            await context.abort(
                grpc.StatusCode.UNAVAILABLE if transient else grpc.StatusCode.INTERNAL,
                f"the coordinator's database failed ({name or exc}); its log says more",
            )

    return wrapper


class FleetServicer(pb_grpc.FleetServicer):
    def __init__(self, fleet: FleetService) -> None:
        self.fleet = fleet

    @_rpc
    async def Register(self, request: pb.RegisterRequest, token: Token) -> pb.RegisterResponse:
        limits.check_register(request)
        agent_id = await self.fleet.register(
            token,
            request.agent_id,
            list(request.labels),
            _fields(request.device),
            request.threads,
            request.agent_version,
        )
        settings = self.fleet.settings
        return pb.RegisterResponse(
            agent_id=agent_id,
            heartbeat_interval_s=settings.heartbeat_interval_s,
            max_chunk_bytes=settings.max_chunk_bytes,
        )

    @_rpc
    async def Heartbeat(self, request: pb.HeartbeatRequest, token: Token) -> pb.HeartbeatResponse:
        limits.check_heartbeat(request, self.fleet.settings.max_jobs_per_lease)
        lost = await self.fleet.heartbeat(
            token, request.agent_id, list(request.lease_ids), _fields(request.telemetry)
        )
        return pb.HeartbeatResponse(
            lost_lease_ids=lost, heartbeat_interval_s=self.fleet.settings.heartbeat_interval_s
        )

    @_rpc
    async def LeaseJobs(self, request: pb.LeaseJobsRequest, token: Token) -> pb.LeaseJobsResponse:
        limits.check_lease(request)
        leased = await self.fleet.lease(token, request.agent_id, request.max_jobs, request.wait_s)
        # specs were decoded (and undecodable ones failed) before the leases were committed
        jobs = [
            pb.Job(
                job_id=j.job_id,
                lease_id=j.lease_id,
                attempt=j.attempt,
                lease_expires_unix_ms=int(j.expires_at * 1000),
                spec=pb.BenchSpec.FromString(j.spec),
            )
            for j in leased
        ]
        return pb.LeaseJobsResponse(jobs=jobs)

    @_rpc
    async def ReadBlob(self, request: pb.ReadBlobRequest, token: Token) -> pb.ReadBlobResponse:
        limits.check_read_blob(request)
        data, total = await self.fleet.read_blob(
            token, request.digest, request.offset, request.limit
        )
        return pb.ReadBlobResponse(data=data, total_size=total)

    @_rpc
    async def ReportResult(
        self, request: pb.ReportResultRequest, token: Token
    ) -> pb.ReportResultResponse:
        status = _STATUS.get(request.result.status)
        if status is None:
            raise ValueError(
                "result.status: expected OK, FAILED, RELEASED or DISTURBED, got "
                f"{request.result.status}"
            )
        result = await asyncio.to_thread(_checked_result, request)
        outcome = await self.fleet.report(
            token,
            request.agent_id,
            request.job_id,
            request.lease_id,
            status,
            result,
            functools.partial(
                limits.check_result_against_spec, request.result, result["samples_ns"]
            ),
        )
        return pb.ReportResultResponse(
            accepted=outcome.accepted, duplicate=outcome.duplicate, late=outcome.late
        )
