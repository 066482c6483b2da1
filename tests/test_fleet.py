"""The fleet end to end on loopback: a real `ofa-coord serve`, real `ofa-agent run`
processes, a real SQLite file, real ONNX models exported from the supernet."""

from __future__ import annotations

import signal
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from coordinator.server.fleet import FleetSettings
from coordinator.services.jobs import BenchOptions, make_spec, model_inputs
from coordinator.state import BlobStore
from proto.ofafleet.v1 import fleet_pb2 as pb
from proto.ofafleet.v1 import fleet_pb2_grpc as pb_grpc
from tests.fleet import Fleet, kill9, small_models, wait_for

LONG = BenchOptions(
    warmup_runs=2,
    warmup_min_s=0.02,
    min_runs=10,
    min_time_s=3.0,
    max_time_s=3.0,
    target_precision=1e-6,
)


def stub(fleet: Fleet) -> pb_grpc.FleetStub:
    return pb_grpc.FleetStub(grpc.insecure_channel(fleet.address))


def bearer(token_file) -> tuple:
    return (("authorization", f"Bearer {token_file.read_text().strip()}"),)


def test_a_job_is_fetched_by_digest_measured_and_its_raw_samples_stored(fleet):
    fleet.start_agent("a")
    ((key, model),) = small_models(1)
    (job_id,) = fleet.enqueue([(key, model)])
    fleet.wait_done([job_id], timeout=60)
    job = fleet.store.job(job_id)
    assert job["state"] == "done" and job["attempts"] == 1
    (result,) = fleet.store.results(job_id)
    assert result["status"] == "ok" and result["accepted"] == 1 and result["late"] == 0
    samples = np.array(result["samples_ns"])
    assert len(samples) == result["n"] >= 10 and (samples > 0).all()
    assert result["median_ms"] == pytest.approx(np.median(samples) / 1e6)
    assert result["stop_reason"] in ("precision", "time_cap")
    assert result["session_create_ns"] > 0 and result["peak_rss_bytes"] > 0
    assert '"unix_time_ns"' in result["telemetry_before"]
    assert "onnxruntime" in result["runtime_versions"]
    assert result["drift_check"] and "baseline_median_ms" in result["drift_check"]
    cached = list((fleet.folder / "cache-a" / "models").iterdir())
    assert [p.name for p in cached] == [job["model_digest"]]
    assert fleet.agents["a"].poll() is None


def test_agent_killed_mid_job_its_lease_goes_to_another_agent(fleet):
    fleet.start_agent("a")
    agent_a = fleet.agent_id("a")
    (job_id,) = fleet.enqueue(small_models(1), options=LONG)
    wait_for(lambda: fleet.store.job(job_id)["state"] == "leased", 30, "agent a to lease the job")
    time.sleep(0.5)  # a is measuring now
    kill9(fleet.agents["a"])
    fleet.start_agent("b")
    fleet.wait_done([job_id], timeout=60)
    job = fleet.store.job(job_id)
    results = fleet.store.results(job_id)
    assert job["state"] == "done" and job["attempts"] == 2
    assert [r["accepted"] for r in results] == [1]
    assert results[0]["agent_id"] == fleet.agent_id("b") != agent_a
    agents = {a["id"]: a for a in fleet.store.list_agents()}
    assert agents[agent_a]["online"] == 0


def test_coordinator_killed_and_restarted_the_work_completes_once(fleet):
    fleet.start_agent("a")
    fleet.agent_id("a")
    jobs = fleet.enqueue(small_models(6))
    wait_for(lambda: fleet.store.job_counts().get("done", 0) >= 1, 60, "a first result")
    port = fleet.port
    assert fleet.stop_server(signal.SIGKILL) == -signal.SIGKILL  # reaped: its port is closed
    fleet.start_server(port=port)  # so_reuseport=0: this binds only if the port is free
    fleet.wait_done(jobs, timeout=90)
    for job_id in jobs:
        assert fleet.store.job(job_id)["state"] == "done"
        accepted = [r for r in fleet.store.results(job_id) if r["accepted"]]
        assert len(accepted) == 1
    assert fleet.agents["a"].poll() is None  # the agent rode out the outage


def test_missing_wrong_and_revoked_tokens_are_refused(fleet):
    client = stub(fleet)
    request = pb.RegisterRequest(labels=["cpu"])
    for metadata, message in (
        ((), "missing bearer token"),
        ((("authorization", "Bearer nope"),), "unknown token"),
    ):
        with pytest.raises(grpc.RpcError) as info:
            client.Register(request, metadata=metadata, timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert message in info.value.details()
    token = fleet.token("r")
    assert client.Register(request, metadata=bearer(token), timeout=10).agent_id
    fleet.store.revoke_token("r")
    with pytest.raises(grpc.RpcError) as info:
        client.Register(request, metadata=bearer(token), timeout=10)
    assert (
        info.value.code() == grpc.StatusCode.UNAUTHENTICATED and "revoked" in info.value.details()
    )
    # a real agent with a wrong token stops at once and says why
    bad = fleet.folder / "bad.token"
    bad.write_text("ofa_wrong")
    process = fleet.start_agent("bad", token=bad)
    assert process.wait(timeout=30) == 3
    assert "coordinator refused the token: unknown token" in fleet.agent_log("bad")


def test_a_token_cannot_act_for_another_agent(fleet):
    client = stub(fleet)
    token_a, token_b = fleet.token("ta"), fleet.token("tb")
    agent_a = client.Register(
        pb.RegisterRequest(labels=["cpu"]), metadata=bearer(token_a), timeout=10
    ).agent_id
    agent_b = client.Register(
        pb.RegisterRequest(labels=["gpu"]), metadata=bearer(token_b), timeout=10
    ).agent_id
    fleet.enqueue(small_models(1))
    (job,) = client.LeaseJobs(
        pb.LeaseJobsRequest(agent_id=agent_a, max_jobs=1, wait_s=5),
        metadata=bearer(token_a),
        timeout=15,
    ).jobs
    report = pb.ReportResultRequest(
        agent_id=agent_a,
        job_id=job.job_id,
        lease_id=job.lease_id,
        result=pb.Result(status=pb.RESULT_STATUS_OK, samples_ns=[1], stop_reason="time_cap"),
    )
    for request in (
        report,
        pb.ReportResultRequest(
            agent_id=agent_b, job_id=job.job_id, lease_id=job.lease_id, result=report.result
        ),
    ):
        with pytest.raises(grpc.RpcError) as info:
            client.ReportResult(request, metadata=bearer(token_b), timeout=10)
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.RpcError) as info:  # nor register under another agent's id
        client.Register(pb.RegisterRequest(agent_id=agent_a), metadata=bearer(token_b), timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    reply = client.ReportResult(report, metadata=bearer(token_a), timeout=10)
    assert reply.accepted and not reply.duplicate
    again = client.ReportResult(report, metadata=bearer(token_a), timeout=10)
    assert again.duplicate and again.accepted


def test_a_blob_that_does_not_match_its_digest_is_rejected(fleet):
    fleet.start_agent("a")
    fleet.agent_id("a")
    ((key, model),) = small_models(1)
    blobs = BlobStore(fleet.store)
    digest = blobs.put(model)
    path = blobs.path(digest)
    path.write_bytes(b"\0" * len(model))  # the file on disk rots
    spec = make_spec(digest, len(model), model_inputs(model), BenchOptions(), lut_key=key)
    (bad_job,) = fleet.store.enqueue(
        [(spec.SerializeToString(), digest)], label="cpu", max_attempts=1
    )
    fleet.wait_done([bad_job])
    job = fleet.store.job(bad_job)
    assert job["state"] == "failed" and "DigestMismatch" in job["error"]
    assert not (fleet.folder / "cache-a" / "models" / digest).exists()
    with pytest.raises(ValueError, match="bytes hash to"):
        blobs.put(model, expected_digest="0" * 64)
    assert fleet.agents["a"].poll() is None


def test_an_oversize_message_gets_a_clear_error(fleet):
    token = fleet.token("big")
    channel = grpc.insecure_channel(
        fleet.address, options=[("grpc.max_send_message_length", 64 * 2**20)]
    )
    client = pb_grpc.FleetStub(channel)
    agent = client.Register(
        pb.RegisterRequest(labels=["cpu"]), metadata=bearer(token), timeout=10
    ).agent_id
    huge = pb.ReportResultRequest(
        agent_id=agent,
        job_id="x",
        lease_id="y",
        result=pb.Result(status=pb.RESULT_STATUS_OK, samples_ns=[2**40] * 3_000_000),
    )
    with pytest.raises(grpc.RpcError) as info:
        client.ReportResult(huge, metadata=bearer(token), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in info.value.details()
    blobs = BlobStore(fleet.store, max_bytes=1000)
    with pytest.raises(ValueError, match="over the limit of 1000 bytes"):
        blobs.put(b"x" * 1001)


def test_a_bad_job_fails_with_its_reason_and_the_agent_carries_on(fleet):
    fleet.start_agent("a")
    ((key, model),) = small_models(1)
    blobs = BlobStore(fleet.store)
    digest = blobs.put(model)
    wrong = make_spec(digest, len(model), [("input", [1, 3, 9, 9])], BenchOptions(), lut_key=key)
    (bad,) = fleet.store.enqueue([(wrong.SerializeToString(), digest)], label="cpu", max_attempts=2)
    good = fleet.enqueue([(key, model)])
    fleet.wait_done([bad, *good])
    job = fleet.store.job(bad)
    assert job["state"] == "failed" and "expected shape [1, 3, 9, 9] (the job's" in job["error"]
    assert "attempt 2 of 2" in job["error"]
    assert [r["status"] for r in fleet.store.results(bad)] == ["failed", "failed"]
    assert fleet.store.job(good[0])["state"] == "done"
    assert fleet.agents["a"].poll() is None


def test_agent_registers_again_when_forgotten(fleet):
    fleet.start_agent("a")
    agent = fleet.agent_id("a")
    fleet.store.forget_agent(agent)
    assert fleet.store.list_agents() == []
    wait_for(
        lambda: [a["id"] for a in fleet.store.list_agents()] == [agent],
        30,
        "the agent to register again",
    )
    jobs = fleet.enqueue(small_models(1))
    fleet.wait_done(jobs)
    assert fleet.store.results(jobs[0])[0]["agent_id"] == agent
    assert "registered as" in fleet.agent_log("a")


def test_sigterm_finishes_the_job_in_hand_then_exits(fleet):
    process = fleet.start_agent("a")
    (job_id,) = fleet.enqueue(small_models(1), options=LONG)
    wait_for(lambda: fleet.store.job(job_id)["state"] == "leased", 30, "the job to be leased")
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    job = fleet.store.job(job_id)
    assert job["state"] == "done"
    (result,) = fleet.store.results(job_id)
    assert result["accepted"] == 1 and result["n"] >= 10
    idle = fleet.start_agent("b")
    fleet.agent_id("b")
    t0 = time.monotonic()
    idle.send_signal(signal.SIGTERM)
    assert idle.wait(timeout=60) == 0
    # Not a speed figure: the agent is in a long poll the server holds for max_wait_s, and
    # an agent that waited it out would take at least that long.
    assert time.monotonic() - t0 < FleetSettings().max_wait_s


def test_health_service_and_devices_listing(fleet):
    channel = grpc.insecure_channel(fleet.address)
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(service="ofafleet.v1.Fleet"), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING
    fleet.start_agent("a", labels=("pixel7", "cpu"))
    agent = fleet.agent_id("a")
    (listed,) = wait_for(lambda: fleet.store.list_agents(), 10, "the agent listed")
    assert listed["id"] == agent and listed["labels"] == ["cpu", "pixel7"]
    assert listed["device"]["machine"] and listed["online"] == 1
    kill9(fleet.agents["a"])
    wait_for(lambda: fleet.store.list_agents()[0]["online"] == 0, 10, "the agent to go offline")
    assert fleet.stop_server() == 0  # graceful shutdown


def test_an_agent_keeps_its_id_across_restarts(fleet):
    token = fleet.token("a")
    first = fleet.start_agent("a", token=token)
    agent = fleet.agent_id("a")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    fleet.start_agent("a", token=token)
    jobs = fleet.enqueue(small_models(1))
    fleet.wait_done(jobs)
    assert [a["id"] for a in fleet.store.list_agents()] == [agent]
    assert fleet.store.results(jobs[0])[0]["agent_id"] == agent


def test_a_token_revoked_while_running_stops_the_agent_with_code_3(fleet):
    process = fleet.start_agent("a")
    fleet.agent_id("a")
    fleet.store.revoke_token("a")
    assert process.wait(timeout=30) == 3
    assert "has been revoked" in fleet.agent_log("a")


def test_a_rotated_token_keeps_the_agent_id(fleet):
    first = fleet.start_agent("a")
    agent = fleet.agent_id("a")
    first.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == 0
    fleet.store.revoke_token("a")
    rotated = fleet.folder / "a2.token"
    rotated.write_text(fleet.store.create_token("a2", agent_id=agent))
    fleet.start_agent("a", token=rotated)
    jobs = fleet.enqueue(small_models(1))
    fleet.wait_done(jobs)
    assert fleet.store.results(jobs[0])[0]["agent_id"] == agent
    assert [a["id"] for a in fleet.store.list_agents()] == [agent]


def test_a_cancelled_job_stops_being_measured(fleet):
    fleet.start_agent("a")
    (job_id,) = fleet.enqueue(small_models(1), options=LONG)
    wait_for(lambda: fleet.store.job(job_id)["state"] == "leased", 30, "the job to be leased")
    assert fleet.store.cancel_jobs([job_id]) == 1
    (result,) = wait_for(lambda: fleet.store.results(job_id), 30, "the agent's report")
    # 'cancelled' is the agent's own word that it stopped on the lost lease; its runs then
    # add up to less than the 3 s that LONG times (no wall clock of this machine involved)
    # (once, under load, a FAILED result came instead: its message will say why)
    assert result["stop_reason"] == "cancelled" and result["accepted"] == 0, dict(result)
    assert sum(result["samples_ns"]) < LONG.min_time_s * 1e9
    assert fleet.store.job(job_id)["state"] == "cancelled"


def test_lease_size_and_register_fields_are_bounded(fleet):
    client = stub(fleet)
    token = fleet.token("t")
    for request, field in (
        (pb.RegisterRequest(labels=["ok", "no spaces"]), "labels[1]"),
        (pb.RegisterRequest(labels=["x"] * 40), "labels: at most 32"),
        (pb.RegisterRequest(agent_id="../../x"), "agent_id:"),
    ):
        with pytest.raises(grpc.RpcError) as info:
            client.Register(request, metadata=bearer(token), timeout=10)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in info.value.details()
    agent = client.Register(
        pb.RegisterRequest(labels=["cpu"]), metadata=bearer(token), timeout=10
    ).agent_id
    fleet.enqueue(small_models(1) * 20)
    leased = client.LeaseJobs(
        pb.LeaseJobsRequest(agent_id=agent, max_jobs=10**6, wait_s=1),
        metadata=bearer(token),
        timeout=15,
    ).jobs
    assert len(leased) == 8
    with pytest.raises(grpc.RpcError) as info:  # an unknown lease is not "unknown agent"
        client.ReportResult(
            pb.ReportResultRequest(
                agent_id=agent,
                job_id=leased[0].job_id,
                lease_id="0" * 32,
                result=pb.Result(
                    status=pb.RESULT_STATUS_OK, samples_ns=[1], stop_reason="time_cap"
                ),
            ),
            metadata=bearer(token),
            timeout=10,
        )
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def serving_one_leased_job(fleet: Fleet):
    """Start the server; a raw client registers and leases one job. Returns the client, its
    token file, agent id, the job's id and the leased job."""
    fleet.start_server()
    client, token = stub(fleet), fleet.token("a")
    agent = client.Register(
        pb.RegisterRequest(labels=["cpu"]), metadata=bearer(token), timeout=10
    ).agent_id
    (job_id,) = fleet.enqueue(small_models(1))
    (job,) = client.LeaseJobs(
        pb.LeaseJobsRequest(agent_id=agent, max_jobs=1, wait_s=10),
        metadata=bearer(token),
        timeout=30,
    ).jobs
    return client, token, agent, job_id, job


def test_a_lease_expires_in_real_time_while_its_agent_stays_online(tmp_path):
    """A lease that is not renewed runs out at its expiry (never before it) and the job is
    queued again, although the agent keeps beating (without listing that lease)."""
    fleet = Fleet(tmp_path, lease_seconds=2.0)
    try:
        client, token, agent, job_id, job = serving_one_leased_job(fleet)

        def requeued() -> bool:
            client.Heartbeat(
                pb.HeartbeatRequest(agent_id=agent), metadata=bearer(token), timeout=10
            )
            return fleet.store.job(job_id)["state"] == "queued"

        wait_for(requeued, 60, "the lease to expire")
        assert time.time() * 1000 >= job.lease_expires_unix_ms
        assert "expired" in fleet.store.job(job_id)["error"]
        assert fleet.store.list_agents()[0]["online"] == 1
    finally:
        fleet.close()


def test_a_restarted_coordinator_gives_agents_a_grace_period(tmp_path):
    """Down for longer than the lease and the offline window, the coordinator comes back
    and does not judge its agents at once: the lease held across the outage is still
    honoured by the first heartbeat after the restart."""
    # a 6 s offline window and lease: the test's first heartbeat, sent as soon as the server
    # says it listens, has 6 s to arrive (it takes well under 1 s on a loaded 2-core machine)
    fleet = Fleet(tmp_path, heartbeat_s=2.0, lease_seconds=6.0)
    try:
        client, token, agent, job_id, job = serving_one_leased_job(fleet)
        port = fleet.port
        assert fleet.stop_server(signal.SIGKILL) == -signal.SIGKILL
        # the outage: past the lease's expiry (and so past the offline window)
        wait_for(
            lambda: time.time() * 1000 > job.lease_expires_unix_ms + 500,
            30,
            "the lease's expiry to pass",
        )
        fleet.start_server(port=port)
        client = stub(fleet)
        reply = client.Heartbeat(
            pb.HeartbeatRequest(agent_id=agent, lease_ids=[job.lease_id]),
            metadata=bearer(token),
            timeout=30,
        )
        assert list(reply.lost_lease_ids) == []
        assert fleet.store.job(job_id)["state"] == "leased"
    finally:
        fleet.close()
