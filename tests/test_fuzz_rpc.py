"""Fuzzing every RPC of a real `ofa-coord serve` on loopback with mutated and undecodable
messages from an authenticated client: the server stays up, never fails with an unhandled
error (UNKNOWN) nor echoes unbounded input, logs no traceback, and afterwards still serves a
real agent (register, lease, measure, report) from start to accepted result."""

from __future__ import annotations

import math
import re
import time

import grpc
import pytest
from google.protobuf.descriptor import FieldDescriptor as F
from hypothesis import given, settings
from hypothesis import strategies as st

from proto.ofafleet.v1 import fleet_pb2 as pb
from proto.ofafleet.v1 import fleet_pb2_grpc as pb_grpc
from tests.fleet import Fleet, small_models
from tests.fuzzing import FUZZ

METHODS = {
    "Register": (pb.RegisterRequest, pb.RegisterResponse),
    "Heartbeat": (pb.HeartbeatRequest, pb.HeartbeatResponse),
    "LeaseJobs": (pb.LeaseJobsRequest, pb.LeaseJobsResponse),
    "ReadBlob": (pb.ReadBlobRequest, pb.ReadBlobResponse),
    "ReportResult": (pb.ReportResultRequest, pb.ReportResultResponse),
}
CALL_TIMEOUT_S = 10  # a long-poll LeaseJobs may run out of it: DEADLINE_EXCEEDED is an answer
NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # labels, ids; a digest is 64 hex digits
MAX_DETAILS = 1000  # "error details never echo unbounded input" (a few hundred characters)
INTS = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_ENUM: (-(2**31), 2**31 - 1),
}
STRINGS = [
    "",
    "x",
    "label\n",
    "agent\n",
    "a" * 5000,
    "\x00",
    "é✓",
    "../../etc/passwd",
    "0" * 64,
    "f" * 64 + "\n",
    "cpu",
    "fuzz",
]


class FuzzClient:
    """An authenticated client of the fleet with one registered agent and one lease: the
    ids that valid messages carry, so mutations reach past the first checks."""

    def __init__(self, fleet: Fleet, name: str) -> None:
        self.channel = grpc.insecure_channel(
            fleet.address,
            options=[
                ("grpc.max_send_message_length", 64 * 2**20),
                ("grpc.max_receive_message_length", 64 * 2**20),
            ],
        )
        self.metadata = (("authorization", f"Bearer {fleet.token(name).read_text()}"),)
        self.stub = pb_grpc.FleetStub(self.channel)
        self.agent_id = self.stub.Register(
            pb.RegisterRequest(labels=["fuzz"], agent_version="f", threads=1),
            metadata=self.metadata,
        ).agent_id
        (self.job,) = self.stub.LeaseJobs(
            pb.LeaseJobsRequest(agent_id=self.agent_id, max_jobs=1), metadata=self.metadata
        ).jobs

    def valid(self, method: str):
        """A request a real agent could send."""
        now = time.time_ns()
        telemetry = pb.Telemetry(
            unix_time_ns=now,
            cpu_freq_mhz=2000.0,
            temperature_c=50.0,
            load_1m=0.5,
            cpu_percent=20.0,
            available_memory_bytes=2**30,
        )
        return {
            "Register": lambda: pb.RegisterRequest(
                agent_id=self.agent_id,
                labels=["fuzz"],
                agent_version="fuzz",
                threads=1,
                device=pb.DeviceInfo(
                    os="Linux",
                    machine="x86_64",
                    logical_cores=2,
                    memory_bytes=2**32,
                    temperature_sources=["cpu"],
                ),
            ),
            "Heartbeat": lambda: pb.HeartbeatRequest(
                agent_id=self.agent_id, lease_ids=[self.job.lease_id], telemetry=telemetry
            ),
            "LeaseJobs": lambda: pb.LeaseJobsRequest(agent_id=self.agent_id, max_jobs=1),
            "ReadBlob": lambda: pb.ReadBlobRequest(digest=self.job.spec.model_digest, limit=4096),
            "ReportResult": lambda: pb.ReportResultRequest(
                agent_id=self.agent_id,
                job_id=self.job.job_id,
                lease_id=self.job.lease_id,
                result=pb.Result(
                    status=pb.RESULT_STATUS_OK,
                    samples_ns=[1_000_000] * 10,
                    session_create_ns=10**7,
                    first_run_ns=10**6,
                    warmup_runs=2,
                    warmup_ns=2 * 10**6,
                    stop_reason="precision",
                    peak_rss_bytes=10**8,
                    before=telemetry,
                    after=telemetry,
                    runtime_versions={"onnxruntime": "1.20"},
                    lease_to_report_ns=10**8,
                ),
            ),
        }[method]()

    def call(self, method: str, request: bytes) -> grpc.StatusCode:
        """Send raw request bytes; the status code (OK for an answer)."""
        raw = self.channel.unary_unary(f"/ofafleet.v1.Fleet/{method}")  # bytes in, bytes out
        try:
            METHODS[method][1].FromString(
                raw(request, timeout=CALL_TIMEOUT_S, metadata=self.metadata)
            )
            return grpc.StatusCode.OK
        except grpc.RpcError as error:
            assert len(error.details() or "") <= MAX_DETAILS, (
                f"{method}: {len(error.details())} characters of details: {error.details()[:200]!r}"
            )
            return error.code()


def _scalar(draw, field):
    if field.type in INTS:
        low, high = INTS[field.type]
        return draw(
            st.one_of(st.sampled_from([low, high, -1, 0, 1, 2**31 - 1, 99]), st.integers(low, high))
        )
    if field.type == F.TYPE_DOUBLE:
        return draw(
            st.one_of(
                st.sampled_from([math.nan, math.inf, -math.inf, -1.0, 0.0, 1e308, -1e-308]),
                st.floats(),
            )
        )
    if field.type == F.TYPE_BOOL:
        return draw(st.booleans())
    if field.type == F.TYPE_BYTES:
        return draw(st.binary(max_size=64))
    return draw(st.one_of(st.sampled_from(STRINGS), st.text(max_size=40)))


def _count(draw, counts: list[int], value) -> int:
    """How many copies of `value` to send: up to 100k, but at most ~4 MB of strings (the
    server's limit is 16 MB; larger messages only test gRPC's own refusal, slowly)."""
    size = len(value) if isinstance(value, (str, bytes)) else 8
    return min(draw(st.sampled_from(counts)), max(1, 4 * 2**20 // max(1, size)))


def _mutate(draw, message) -> None:
    """One mutation of one field, at any depth: odd scalars (NaN, inf, negative, out of
    range, unknown enum values, strings with newlines), cleared fields, huge repeated
    fields and maps."""
    fields = message.DESCRIPTOR.fields_by_name
    field = fields[draw(st.sampled_from(sorted(fields)))]
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        entries = getattr(message, field.name)
        key, value = draw(st.sampled_from(STRINGS)), draw(st.sampled_from(STRINGS))
        for i in range(_count(draw, [1, 100, 10_000], key + value)):
            entries[f"{key}{i}"] = value
    elif field.message_type is not None:
        if draw(st.booleans()):
            _mutate(draw, getattr(message, field.name))
        else:
            message.ClearField(field.name)
    elif field.is_repeated:
        values = getattr(message, field.name)
        if draw(st.booleans()):
            del values[:]
        value = _scalar(draw, field)
        values.extend([value] * _count(draw, [1, 3, 1000, 100_000], value))
    else:
        setattr(message, field.name, _scalar(draw, field))


def must_refuse(request) -> str | None:
    """Why the server must not answer this request OK, or None. Only the plain cases:
    non-finite telemetry, identifiers that merely start with a valid name (`label\n`),
    repeated fields far beyond what a real agent sends, samples <= 0."""

    def telemetry(message):
        return (
            [message]
            if isinstance(message, pb.Telemetry)
            else [
                t
                for f, value in message.ListFields()
                if f.message_type is not None and not f.is_repeated
                for t in telemetry(value)
            ]
        )

    for t in telemetry(request):
        for field, value in t.ListFields():
            if isinstance(value, float) and not math.isfinite(value):
                return f"telemetry {field.name} is {value}"
    names = {"RegisterRequest": ["agent_id", "labels"], "ReadBlobRequest": ["digest"]}
    for name in names.get(type(request).__name__, []):
        values = getattr(request, name)
        for value in [values] if isinstance(values, str) else values:
            if value and not NAME.fullmatch(value):
                return f"{name} {value[:40]!r} is not a full-match identifier"
    if isinstance(request, pb.HeartbeatRequest) and len(request.lease_ids) > 1000:
        return f"{len(request.lease_ids)} lease ids (an agent holds a handful)"
    if (
        isinstance(request, pb.ReportResultRequest)
        and request.result.status == pb.RESULT_STATUS_OK
        and any(s <= 0 for s in request.result.samples_ns)
    ):
        return "samples_ns holds a sample <= 0"
    return None


def server_log(fleet: Fleet) -> str:
    return (fleet.folder / "server.log").read_text(errors="replace")


def assert_healthy(fleet: Fleet, name: str, log_start: int) -> None:
    """The server is up, a real agent gets a job measured and accepted, and the log since
    `log_start` holds no traceback."""
    assert fleet.server.poll() is None, "the server exited"
    fleet.start_agent(name, labels=(name,))
    jobs = fleet.enqueue(fleet.models, label=name)
    fleet.wait_done(jobs, timeout=120)
    assert fleet.store.job(jobs[0])["state"] == "done"
    assert [r["accepted"] for r in fleet.store.results(jobs[0])] == [1]
    log = server_log(fleet)[log_start:]
    assert "Traceback" not in log, log[max(0, log.index("Traceback") - 300) :][:3000]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    """One server for both tests (each checks its own healthy agent and the whole log)."""
    fleet = Fleet(tmp_path_factory.mktemp("fuzz-rpc"), heartbeat_s=1.0, lease_seconds=30.0)
    try:
        fleet.start_server()
        fleet.models = small_models(1)
        fleet.enqueue(fleet.models, label="fuzz", repeats=300)  # leases for the fuzzers
        yield fleet
    finally:
        fleet.close()


def test_mutated_messages_to_every_rpc_leave_the_server_healthy(fleet):
    client, log_start = FuzzClient(fleet, "mutator"), len(server_log(fleet))

    @settings(FUZZ, max_examples=100)
    @given(st.sampled_from(sorted(METHODS)), st.data())
    def fuzz(method, data):
        request = client.valid(method)
        for _ in range(data.draw(st.integers(1, 3))):
            _mutate(data.draw, request)
        code = client.call(method, request.SerializeToString())
        assert code != grpc.StatusCode.UNKNOWN, f"{method}: an unhandled error in the server"
        if code == grpc.StatusCode.OK:
            reason = must_refuse(request)
            assert reason is None, f"{method} answered OK, but {reason}"
        assert fleet.server.poll() is None, "the server exited"

    fuzz()
    assert_healthy(fleet, "healthy-after-mutations", log_start)


def test_undecodable_requests_leave_the_server_healthy(fleet):
    client, log_start = FuzzClient(fleet, "scrambler"), len(server_log(fleet))

    @settings(FUZZ, max_examples=40)
    @given(st.sampled_from(sorted(METHODS)), st.data())
    def fuzz(method, data):
        valid = client.valid(method).SerializeToString()
        request = data.draw(
            st.one_of(
                st.binary(min_size=1, max_size=200),
                st.integers(1, len(valid) - 1).map(lambda cut: valid[:cut]),  # truncated
                st.integers(0, len(valid) - 1).map(  # a flipped byte
                    lambda at: valid[:at] + bytes([valid[at] ^ 0xFF]) + valid[at + 1 :]
                ),
                st.sampled_from([b"\xff" * 10, b"\x0a\xff\xff\xff\xff\x0f", b"\x08" * 1000]),
            )
        )
        client.call(method, request)  # any status: the bytes are not a message
        assert fleet.server.poll() is None, "the server exited"

    fuzz()
    assert_healthy(fleet, "healthy-after-garbage", log_start)
