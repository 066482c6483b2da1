"""The coordinator refuses what it must. A real `ofa-coord serve` on loopback, a
real SQLite file and raw gRPC clients sending what a careless or hostile client would."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import grpc
import pytest

from coordinator.server.fleet import FleetSettings
from coordinator.server.limits import MAX_REQUEST_BYTES
from coordinator.server.serve import parse_listen
from coordinator.state import BlobStore
from proto.ofafleet.v1 import fleet_pb2 as pb
from proto.ofafleet.v1 import fleet_pb2_grpc as pb_grpc
from tests.fleet import QUICK, Fleet, small_models
from tests.test_tls import make_certificates


class Client:
    """A raw client with one token: what a hostile one would use."""

    def __init__(self, fleet: Fleet, name: str, labels=("cpu",)) -> None:
        self.stub = pb_grpc.FleetStub(grpc.insecure_channel(fleet.address))
        self.metadata = (("authorization", f"Bearer {fleet.token(name).read_text()}"),)
        self.agent_id = self.call("Register", pb.RegisterRequest(labels=list(labels))).agent_id

    def call(self, method: str, request, timeout: float = 30):
        return getattr(self.stub, method)(request, metadata=self.metadata, timeout=timeout)

    def refused(self, method: str, request) -> grpc.RpcError:
        with pytest.raises(grpc.RpcError) as info:
            self.call(method, request)
        return info.value

    def lease(self) -> pb.Job:
        (job,) = self.call(
            "LeaseJobs", pb.LeaseJobsRequest(agent_id=self.agent_id, max_jobs=1, wait_s=10)
        ).jobs
        return job


def serve(tmp_path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    """`ofa-coord serve` that is expected to refuse to start (the timeout fails the test if
    it serves instead)."""
    return subprocess.run(
        [sys.executable, "-m", "coordinator", "serve", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    # "ofa-coord: error:" for what serve refuses, click's "Error:" for a malformed option
    (line,) = [
        line for line in out.stderr.splitlines() if line.startswith(("ofa-coord: error:", "Error:"))
    ]
    return line


# ------------------------------------------------------------------ starting the server
def test_a_second_server_on_a_port_in_use_fails_at_once(fleet, tmp_path):
    out = serve(tmp_path, "--db", str(tmp_path / "other.db"), "--listen", fleet.address)
    assert "cannot serve on" in one_line_error(out)
    assert fleet.server.poll() is None
    assert sorted(tmp_path.glob("other.db*")) == []  # the failed start left no database


@pytest.mark.parametrize(
    "listen",
    ["127.0.0.1:99999", "127.0.0.1:65536", "127.0.0.1:-5", "127.0.0.1", "::1", "127.0.0.1:"],
)
def test_a_listen_address_without_a_valid_port_is_refused(tmp_path, listen):
    with pytest.raises(ValueError, match="--listen: expected HOST:PORT"):
        parse_listen(listen)
    db = tmp_path / "fleet.db"
    line = one_line_error(serve(tmp_path, "--db", str(db), "--listen", listen))
    assert "--listen" in line and listen in line
    assert not db.exists()  # refused before the database was touched


def test_parse_listen_accepts_what_grpc_serves():
    assert parse_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert parse_listen("[::1]:65535") == ("[::1]", 65535)
    assert parse_listen(":50051") == ("", 50051)


@pytest.mark.parametrize(
    "option",
    [
        ("--lease-seconds", "inf"),
        ("--lease-seconds", "nan"),
        ("--heartbeat-interval", "nan"),
        ("--heartbeat-interval", "-inf"),
    ],
)
def test_non_finite_serve_options_are_refused_before_the_database(tmp_path, option):
    db = tmp_path / "fleet.db"
    out = serve(tmp_path, "--db", str(db), "--listen", "127.0.0.1:0", *option)
    assert out.returncode == 2 and option[0] in out.stderr and "Traceback" not in out.stderr
    assert not db.exists()


@pytest.mark.parametrize("field", ["heartbeat_interval_s", "lease_seconds", "max_wait_s"])
def test_fleet_settings_refuse_non_finite_and_out_of_range_values(field):
    for bad in (math.inf, math.nan, -1.0, 1e12):
        with pytest.raises(ValueError, match=f"^{field}: expected a finite"):
            FleetSettings(**{field: bad})
    with pytest.raises(ValueError, match="^missed_heartbeats"):
        FleetSettings(missed_heartbeats=2.5)


@pytest.mark.parametrize(
    "content, reason", [(b"", "the file is empty"), (b"not sqlite at all\n" * 64, "not a database")]
)
def test_serve_on_a_file_that_is_not_a_fleet_database_refuses(tmp_path, content, reason):
    db = tmp_path / "fleet.db"
    db.write_bytes(content)
    line = one_line_error(serve(tmp_path, "--db", str(db), "--listen", "127.0.0.1:0"))
    assert str(db) in line and reason in line
    assert db.read_bytes() == content


def test_serve_with_certificate_and_key_swapped_names_the_cause(tmp_path):
    make_certificates(tmp_path)
    db = tmp_path / "fleet.db"
    line = one_line_error(
        serve(
            tmp_path,
            "--db",
            str(db),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "server.key",
            "--tls-key",
            "server.pem",
        )
    )
    assert "swapped" in line
    line = one_line_error(
        serve(
            tmp_path,
            "--db",
            str(db),
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "server.pem",
            "--tls-key",
            "ca.key",
        )
    )
    assert "does not match" in line


# ---------------------------------------------------------------------- what is sent
def test_an_undecodable_request_is_refused_with_one_log_line(fleet):
    client = Client(fleet, "a")
    raw = grpc.insecure_channel(fleet.address).unary_unary("/ofafleet.v1.Fleet/Heartbeat")
    with pytest.raises(grpc.RpcError) as info:
        raw(b"\xff\xff\xff\xff", metadata=client.metadata, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    client.call("Heartbeat", pb.HeartbeatRequest(agent_id=client.agent_id))  # still serving
    log = (fleet.folder / "server.log").read_text()
    assert "Traceback" not in log
    (warning,) = [line for line in log.splitlines() if "undecodable request" in line]
    assert "WARNING Heartbeat: undecodable request of 4 bytes" in warning


@pytest.mark.parametrize(
    "method, request_",
    [
        ("Register", pb.RegisterRequest(labels=["cpu\n"])),
        ("Register", pb.RegisterRequest(agent_id="a1\n")),
        ("ReadBlob", pb.ReadBlobRequest(digest="ab" * 32 + "\n")),
        ("Heartbeat", None),  # the agent's own id with a newline
    ],
)
def test_identifiers_must_match_whole(fleet, method, request_):
    client = Client(fleet, "a")
    request_ = request_ or pb.HeartbeatRequest(agent_id=client.agent_id + "\n")
    assert client.refused(method, request_).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_error_details_never_echo_unbounded_input(fleet):
    client = Client(fleet, "a")
    for method, request in (
        ("Register", pb.RegisterRequest(labels=["x y" * 50_000])),
        ("Register", pb.RegisterRequest(agent_version="v" * 100_000)),
        ("ReadBlob", pb.ReadBlobRequest(digest="z" * 100_000)),
        (
            "ReportResult",
            pb.ReportResultRequest(
                agent_id=client.agent_id, job_id="f" * 100_000, lease_id="f" * 32
            ),
        ),
    ):
        error = client.refused(method, request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert len(error.details()) <= 400


def test_repeated_fields_are_bounded_to_what_an_agent_sends(fleet):
    """5 M lease ids (15 MB) once blocked the server for 9.8 s; 100 k (3.4 MB) are
    refused by size before decoding, and one id more than an agent may hold by count."""
    client = Client(fleet, "a")
    request = pb.HeartbeatRequest(
        agent_id=client.agent_id, lease_ids=[f"{i:032x}" for i in range(100_000)]
    )
    error = client.refused("Heartbeat", request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"at most {MAX_REQUEST_BYTES['Heartbeat']} for Heartbeat" in error.details()
    held = FleetSettings().max_jobs_per_lease
    request = pb.HeartbeatRequest(
        agent_id=client.agent_id, lease_ids=[f"{i:032x}" for i in range(held + 1)]
    )
    error = client.refused("Heartbeat", request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"lease_ids: at most {held}" in error.details()
    for request in (
        pb.RegisterRequest(labels=[f"l{i}" for i in range(33)]),
        pb.RegisterRequest(device=pb.DeviceInfo(temperature_sources=["t"] * 1000)),
        pb.RegisterRequest(device=pb.DeviceInfo(cpu_max_mhz=math.inf)),
    ):
        assert client.refused("Register", request).code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(
    "telemetry",
    [
        pb.Telemetry(temperature_c=math.nan),
        pb.Telemetry(cpu_percent=math.inf),
        pb.Telemetry(load_1m=-1.0),
        pb.Telemetry(cpu_steal_percent=1e9),
    ],
)
def test_non_finite_or_impossible_telemetry_is_refused_before_it_is_stored(fleet, telemetry):
    client = Client(fleet, "a")
    client.call(
        "Heartbeat",
        pb.HeartbeatRequest(agent_id=client.agent_id, telemetry=pb.Telemetry(load_1m=0.5)),
    )
    error = client.refused(
        "Heartbeat", pb.HeartbeatRequest(agent_id=client.agent_id, telemetry=telemetry)
    )
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and "telemetry." in error.details()
    assert fleet.store.list_agents()[0]["telemetry"] == {"load_1m": 0.5}


# ------------------------------------------------------------------------- reports
def test_reports_that_contradict_the_job_are_refused_and_not_stored(fleet):
    """QUICK jobs: time cap 2 s, min_runs 10."""
    client = Client(fleet, "a")
    (job_id,) = fleet.enqueue(small_models(1))
    job = client.lease()
    cap_ns = int(QUICK.max_time_s * 1e9)

    def report(samples, stop_reason="time_cap", profile=None, job=job):
        return pb.ReportResultRequest(
            agent_id=client.agent_id,
            job_id=job.job_id,
            lease_id=job.lease_id,
            result=pb.Result(
                status=pb.RESULT_STATUS_OK,
                samples_ns=samples,
                stop_reason=stop_reason,
                profile=profile,
            ),
        )

    def profile(mean_us=5.0, node="/blocks.1/conv/Conv"):
        return pb.Profile(runs=20, nodes=[pb.NodeTime(node=node, op_type="Conv", mean_us=mean_us)])

    ten = [1_000_000] * 10
    for request, why in (
        (report([1_000_000] * 9 + [0]), "every sample must be > 0"),
        (report([-5] * 10), "every sample must be > 0"),
        (report([3600 * 10**9] * 10), "no run of a model takes an hour"),
        (report([cap_ns // 1000] * 1100), "do not fit the job's time cap"),
        (report([1_000_000] * 5, "precision"), "min_runs=10"),
        (report(ten, "bored"), "stop_reason"),
        (report(ten, profile=profile()), "the job did not ask for a profile"),
        (report(ten, profile=profile(math.nan)), "result.profile.nodes[0].mean_us"),
        (report(ten, profile=profile(-1.0)), "result.profile.nodes[0].mean_us"),
        (report(ten, profile=profile(node="x" * 600)), "result.profile.nodes[0].node"),
    ):
        error = client.refused("ReportResult", request)
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and why in error.details()
    assert fleet.store.results(job_id) == [] and fleet.store.job(job_id)["state"] == "leased"
    # a model slower than the cap: its one block began before the cap, so it is a result
    assert client.call("ReportResult", report([cap_ns + 1] * 10)).accepted
    (profiled_id,) = fleet.enqueue(small_models(1), profile=True)
    profiled = client.lease()
    assert profiled.job_id == profiled_id and profiled.spec.profile
    failed = report(ten, profile=profile(), job=profiled)
    failed.result.status = pb.RESULT_STATUS_FAILED
    for request, why in (
        (failed, "only an OK result carries a profile"),
        (report(ten, profile=pb.Profile(runs=20), job=profiled), "either nodes or the error"),
        (report(ten, profile=pb.Profile(error="x", nodes=profile().nodes), job=profiled), "either"),
    ):
        error = client.refused("ReportResult", request)
        assert why in error.details()
    assert client.call("ReportResult", report(ten, profile=profile(), job=profiled)).accepted
    (stored,) = fleet.store.results(profiled_id)
    assert json.loads(stored["profile"])["nodes"][0]["mean_us"] == 5.0


# ------------------------------------------------------------------ leases and blobs
def test_read_blob_serves_only_models_of_jobs_leased_to_the_caller(fleet):
    mine, other = Client(fleet, "mine"), Client(fleet, "other", labels=("gpu",))
    ((key, model),) = small_models(1)
    fleet.enqueue([(key, model)])
    digest = BlobStore(fleet.store).put(model)
    request = pb.ReadBlobRequest(digest=digest, offset=0, limit=1 << 20)
    assert mine.refused("ReadBlob", request).code() == grpc.StatusCode.PERMISSION_DENIED
    assert other.refused("ReadBlob", request).code() == grpc.StatusCode.PERMISSION_DENIED
    mine.lease()
    assert mine.call("ReadBlob", request).total_size == len(model)
    assert other.refused("ReadBlob", request).code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_job_whose_spec_cannot_reach_an_agent_is_failed_not_leased(fleet):
    client = Client(fleet, "a")
    ((key, model),) = small_models(1)
    digest = BlobStore(fleet.store).put(model)
    (broken,) = fleet.store.enqueue([(b"\xff\xffnot a BenchSpec", digest)], label="cpu")
    good = fleet.enqueue([(key, model)])
    job = client.lease()
    assert job.job_id == good[0]
    record = fleet.store.job(broken)
    assert record["state"] == "failed" and record["error"].startswith("spec: not a BenchSpec")
    assert (
        fleet.store.db.execute("SELECT COUNT(*) FROM leases WHERE job_id=?", (broken,)).fetchone()[
            0
        ]
        == 0
    )


def test_an_agent_that_registers_again_gets_its_old_leases_released(fleet):
    """What a restart (or kill -9) of an agent looks like to the server: the same id
    registers again while its lease is still running; the job is queued again at once."""
    client = Client(fleet, "a")
    (job_id,) = fleet.enqueue(small_models(1))
    first = client.lease()
    client.call("Register", pb.RegisterRequest(agent_id=client.agent_id, labels=["cpu"]))
    second = client.lease()
    assert (second.job_id, second.attempt) == (job_id, 2) and second.lease_id != first.lease_id
    assert "was restarted" in fleet.store.job(job_id)["error"]


def test_an_agent_holds_no_more_leases_than_a_heartbeat_may_list(fleet):
    client = Client(fleet, "a")
    held = FleetSettings().max_jobs_per_lease
    fleet.enqueue(small_models(1) * (held + 2))
    request = pb.LeaseJobsRequest(agent_id=client.agent_id, max_jobs=held, wait_s=5)
    assert len(client.call("LeaseJobs", request).jobs) == held
    request.wait_s = 0
    assert len(client.call("LeaseJobs", request).jobs) == 0
    assert fleet.store.job_counts()["queued"] == 2
