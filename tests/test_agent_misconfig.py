"""What the agent does with each kind of mistake, as real processes against a real
coordinator (or a real gRPC server that never answers): settings that cannot work stop it
at once with exit code 3 and one line naming the fix; outages are retried and logged once
per state change; two agents on one host do not share an identity by default."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import threading
from concurrent import futures

import grpc
import pytest
from click.testing import CliRunner

from agent.runner import describe_job
from agent.settings import MISCONFIGURED
from coordinator.cli.app import main as coord
from coordinator.services.jobs import make_spec
from coordinator.state import BlobStore
from ofa.config import SubnetConfig
from proto.ofafleet.v1 import fleet_pb2 as pb
from proto.ofafleet.v1 import fleet_pb2_grpc as pb_grpc
from tests.fleet import QUICK, Fleet, kill9, small_models, wait_for

LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ")


@pytest.fixture
def fleet(tmp_path):
    fleet = Fleet(tmp_path)
    yield fleet
    fleet.close()


def start(fleet: Fleet, name: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    """`ofa-agent run ARGS` as a process logging to agent-NAME.log (no --cache-dir unless
    ARGS has one, unlike Fleet.start_agent); killed by fleet.close()."""
    process = subprocess.Popen(
        [sys.executable, "-m", "agent", "run", *args],
        stdout=open(fleet.folder / f"agent-{name}.log", "ab"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
    )
    fleet.agents[name] = process
    return process


def lines(log: str, pattern: str) -> list[str]:
    """Lines of an agent log containing `pattern`; every line must be one log record (no
    multi-line dumps, no tracebacks)."""
    assert all(LOG_LINE.match(line) for line in log.splitlines()), log
    return [line for line in log.splitlines() if pattern in line]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# ------------------------------------------------------------------- settings
@pytest.mark.parametrize(
    "coordinator, message",
    [
        ("127.0.0.1", "--coordinator: expected HOST:PORT"),
        ("127.0.0.1:99999", "--coordinator: the port must be 1-65535, got '99999'"),
        ("127.0.0.1:65536", "--coordinator: the port must be 1-65535, got '65536'"),
        ("127.0.0.1:-5", "--coordinator: the port must be 1-65535, got '-5'"),
        ("localhost:", "--coordinator: the port must be 1-65535, got ''"),
        ("::1:50051", "write an IPv6 address as [ADDRESS]:PORT"),
        ("127.0.0.1:1,", "--coordinator: an empty address in"),  # a list of coordinators
        ("127.0.0.1:1,127.0.0.1:1", "--coordinator: an address is given twice"),
        ("127.0.0.1:1,127.0.0.1", "--coordinator: expected HOST:PORT"),
    ],
)
def test_an_address_without_a_valid_port_is_refused_at_once(tmp_path, coordinator, message):
    token = tmp_path / "t"
    token.write_text("ofa_x")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "run",
            "--coordinator",
            coordinator,
            "--token-file",
            token,
            "--cache-dir",
            tmp_path / "c",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == MISCONFIGURED
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


@pytest.mark.parametrize(
    "content, option, message",
    [
        (bytes(range(256)), "--token-file", "holds binary or non-ASCII data, not a token"),
        (b"", "--token-file", "is empty; pass the file that `ofa-coord token create --out` wrote"),
        (b"\n \n", "--token-file", "is empty"),
        (b"ofa_a ofa_b\n", "--token-file", "holds more than one word or control characters"),
        (b"x" * 5000, "--token-file", "too large"),
        (None, "--token-file", "no such file"),
        (b"not a certificate\n", "--tls-ca", "holds no PEM certificate; pass the CA certificate"),
    ],
)
def test_a_bad_token_or_ca_file_is_one_line_and_exit_3(tmp_path, content, option, message):
    token, ca = tmp_path / "token", tmp_path / "ca.pem"
    token.write_text("ofa_x\n")
    target = token if option == "--token-file" else ca
    if content is not None:
        target.write_bytes(content)
    elif target.exists():
        target.unlink()
    args = ["--token-file", token] + (["--tls-ca", ca] if option == "--tls-ca" else [])
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agent",
            "run",
            "--coordinator",
            "127.0.0.1:50051",
            "--cache-dir",
            tmp_path / "c",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == MISCONFIGURED
    assert done.stderr.startswith(f"Error: {option} {target}: ")
    assert done.stderr.count("\n") == 1 and message in done.stderr, done.stderr


@pytest.mark.parametrize("option", ["--min-time", "--max-time"])
def test_bench_refuses_a_time_that_is_not_finite(tmp_path, option):
    model = tmp_path / "m.onnx"
    model.write_bytes(b"")  # never opened: the settings are refused first
    for value in ("nan", "inf"):
        done = subprocess.run(
            [sys.executable, "-m", "agent", "bench", model, option, value],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert "_time_s: expected a finite number" in done.stderr


def test_an_invalid_label_stops_the_agent_with_the_fix(fleet):
    fleet.start_server()
    process = fleet.start_agent("a", labels=("pixel 7",))
    assert process.wait(timeout=60) == MISCONFIGURED
    (error,) = lines(fleet.agent_log("a"), " ERROR ")
    assert "coordinator refused the registration: labels[0]" in error
    assert error.endswith("; change --label; stopping")
    assert fleet.store.list_agents() == []


def test_a_token_serves_only_its_labels(fleet):
    """A token made with `token create --label pixel7` cannot register another label: the
    agent stops with code 3 naming the token, the refused and the allowed labels, and
    serves pixel7 with the same token."""
    fleet.start_server()
    token = fleet.folder / "pixel.token"
    created = CliRunner().invoke(
        coord,
        ["token", "create", "--db", str(fleet.db), "--name", "pixel", "--label", "pixel7"]
        + ["--out", str(token)],
    )
    assert created.exit_code == 0, created.output
    process = fleet.start_agent("other", labels=("other",), token=token)
    assert process.wait(timeout=60) == MISCONFIGURED
    (error,) = lines(fleet.agent_log("other"), " ERROR ")
    assert error.endswith(
        "coordinator refused the token: labels: token 'pixel' may not serve other (it allows "
        "pixel7); change --label, or use a token created with --label other; stopping"
    )
    assert fleet.store.list_agents() == []
    fleet.start_agent("pixel", labels=("pixel7",), token=token)
    jobs = fleet.enqueue(small_models(1), label="pixel7")
    fleet.wait_done(jobs)
    assert [r["status"] for r in fleet.store.results(jobs[0])] == ["ok"]
    assert [a["labels"] for a in fleet.store.list_agents()] == [["pixel7"]]


# ---------------------------------------------------------------- two agents
def test_two_agents_on_one_host_keep_apart_without_cache_dir(fleet):
    """Before, both took ~/.cache/ofa-agent/agent-id and the second stopped with code 3."""
    fleet.start_server()
    home = fleet.folder / "home"
    tokens = []
    for name in ("a", "b"):  # written with a trailing newline, as an editor would
        tokens.append(fleet.folder / f"{name}.token")
        tokens[-1].write_text(fleet.store.create_token(name) + "\n")
    for name, token in zip("ab", tokens, strict=True):  # default log level: no -v
        start(
            fleet,
            name,
            "--coordinator",
            fleet.address,
            "--token-file",
            str(token),
            "--label",
            "cpu",
            "--no-disturbance-check",  # two agents on the suite's cores disturb each other
            env={"HOME": str(home)},
        )
    wait_for(lambda: len(fleet.store.list_agents()) == 2, 60, "both agents to register")

    def ids_on_disk() -> set[str]:
        return {p.read_text() for p in (home / ".cache" / "ofa-agent").glob("*/agent-id")}

    # an agent writes its id file just after the coordinator has stored its registration
    registered = {a["id"] for a in fleet.store.list_agents()}
    wait_for(lambda: ids_on_disk() == registered, 30, "both agents to write their ids")
    jobs = fleet.enqueue(small_models(4))
    fleet.wait_done(jobs)
    assert all(fleet.agents[n].poll() is None for n in "ab")
    for name in "ab":
        log = fleet.agent_log(name)
        assert len(lines(log, "INFO registered as ")) == 1 and not lines(log, " ERROR ")


def test_a_shared_cache_dir_names_the_option_to_change(fleet):
    fleet.start_server()
    shared = fleet.folder / "shared-cache"
    first = fleet.start_agent("a", extra=("--cache-dir", str(shared)))
    wait_for(lambda: (shared / "agent-id").exists(), 60, "the first agent to register")
    second = fleet.start_agent("b", extra=("--cache-dir", str(shared)))
    assert second.wait(timeout=60) == MISCONFIGURED
    (error,) = lines(fleet.agent_log("b"), " ERROR ")
    assert f"came from {shared / 'agent-id'}" in error
    assert "give each agent its own --cache-dir, or leave --cache-dir out" in error
    assert first.poll() is None


# --------------------------------------------------------------------- outages
def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(fleet):
    port = free_port()  # nothing listens there yet: the coordinator is "not up yet"
    token = fleet.token("a")
    start(
        fleet,
        "a",
        "--coordinator",
        f"127.0.0.1:{port}",
        "--token-file",
        str(token),
        "--cache-dir",
        str(fleet.folder / "cache-a"),
        "--label",
        "cpu",
        "-v",
        "--no-disturbance-check",  # the job at the end is not about the machine's load
        "--no-cooldown",
    )
    retries = lambda: lines(fleet.agent_log("a"), "Register: UNAVAILABLE; retrying")  # noqa: E731
    wait_for(lambda: len(retries()) >= 3, 60, "three retries of Register")
    (outage,) = lines(fleet.agent_log("a"), "WARNING no answer from coordinator")
    assert "Connection refused" in outage
    fleet.start_server(port=port)
    fleet.agent_id("a")
    log = fleet.agent_log("a")
    assert len(lines(log, f"INFO coordinator 127.0.0.1:{port} answers again")) == 1
    assert len(lines(log, "INFO registered as ")) == 1
    kill9(fleet.server)  # and once more after it has been registered
    wait_for(
        lambda: len(lines(fleet.agent_log("a"), "no answer from coordinator")) >= 2,
        60,
        "the agent to notice the coordinator is gone",
    )
    fleet.start_server(port=port)
    wait_for(
        lambda: len(lines(fleet.agent_log("a"), "answers again")) == 2,
        60,
        "the agent to notice the coordinator is back",
    )
    jobs = fleet.enqueue(small_models(1))
    fleet.wait_done(jobs)
    assert fleet.agents["a"].poll() is None


class StalledFleet(pb_grpc.FleetServicer):
    """A coordinator whose first `stall` Register calls never answer (each is held until
    the caller gives up); then it answers, and hands out no jobs."""

    def __init__(self, stall: int) -> None:
        self.stall = stall
        self.deadlines: list[float | None] = []  # seconds left of each Register call on arrival
        self.lock = threading.Lock()

    def Register(self, request, context):
        with self.lock:
            self.deadlines.append(context.time_remaining())
            held = len(self.deadlines) <= self.stall
        if held:
            ended = threading.Event()
            context.add_callback(ended.set)
            ended.wait(120)
            return pb.RegisterResponse()
        return pb.RegisterResponse(agent_id="answered-3rd", heartbeat_interval_s=1.0)

    def Heartbeat(self, request, context):
        return pb.HeartbeatResponse(heartbeat_interval_s=1.0)

    def LeaseJobs(self, request, context):
        ended = threading.Event()
        context.add_callback(ended.set)
        ended.wait(min(request.wait_s, 5))
        return pb.LeaseJobsResponse()


def test_a_call_the_coordinator_does_not_answer_times_out_at_the_deadline_and_is_retried(fleet):
    servicer = StalledFleet(stall=2)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_FleetServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        token = fleet.folder / "t"
        token.write_text("ofa_any")
        rpc_timeout = 1.0
        process = start(
            fleet,
            "a",
            "--coordinator",
            f"127.0.0.1:{port}",
            "--token-file",
            str(token),
            "--cache-dir",
            str(fleet.folder / "cache"),
            "--rpc-timeout",
            str(rpc_timeout),
            "-v",
        )
        wait_for(
            lambda: (fleet.folder / "cache" / "agent-id").exists(),
            120,
            "the third Register call to be answered",
        )
        assert (fleet.folder / "cache" / "agent-id").read_text() == "answered-3rd"
        assert len(servicer.deadlines) >= 3
        # Every call carried the configured deadline, not the 15 s default. The server sees
        # it through the grpc-timeout header, which gRPC rounds up to its unit, so it may read
        # a few ms above 1 s (8.5 ms seen); 0.5 s of slack still tells 1 s from 15 s.
        assert all(0 < left <= rpc_timeout + 0.5 for left in servicer.deadlines), servicer.deadlines
        log = fleet.agent_log("a")
        assert lines(log, "Register: DEADLINE_EXCEEDED; retrying")
        assert lines(log, "WARNING no answer from coordinator")[0].count("DEADLINE_EXCEEDED") == 1
        assert lines(log, "answers again") and lines(log, "INFO registered as answered-3rd")
        process.terminate()
        assert process.wait(timeout=60) == 0
        assert lines(fleet.agent_log("a"), "INFO stopped (agent answered-3rd)")
    finally:
        server.stop(grace=None)


# ------------------------------------------------------------------ torch gate
def test_torch_jobs_fail_cleanly_without_allow_torch_and_run_with_it(fleet):
    import torch

    from ofa.nn.export import input_shape, lut_entry_module
    from ofa.plan import layer_plan

    fleet.start_server()
    torch_options = dataclasses.replace(QUICK, runtime="torch", execution_provider="cpu")
    layer = layer_plan(SubnetConfig.largest(r=64))[3]
    shape = input_shape(layer)
    buffer = io.BytesIO()
    torch.jit.save(torch.jit.trace(lut_entry_module(layer), torch.zeros(shape)), buffer)
    script = buffer.getvalue()
    digest = BlobStore(fleet.store).put(script)
    spec = make_spec(
        digest, len(script), [("input", shape)], torch_options, lut_key=layer.lut_key
    ).SerializeToString()
    (gated,) = fleet.store.enqueue([(spec, digest)], label="cpu", max_attempts=1)
    fleet.start_agent("plain")
    fleet.wait_done([gated])
    job = fleet.store.job(gated)
    assert job["state"] == "failed" and "start it with --allow-torch" in job["error"]
    assert fleet.agents["plain"].poll() is None  # a refused job never stops the agent
    (allowed,) = fleet.store.enqueue([(spec, digest)], label="gpu", max_attempts=1)
    fleet.start_agent("torch", labels=("gpu",), extra=("--allow-torch",))
    fleet.wait_done([allowed])
    (result,) = fleet.store.results(allowed)
    assert result["status"] == "ok" and result["accepted"] == 1
    assert json.loads(result["runtime_versions"])["torch"] == torch.__version__
    # only the agent that runs torch jobs advertises torch (the other never imports it)
    devices = {a["id"]: a["device"] for a in fleet.store.list_agents()}
    assert devices[fleet.agent_id("torch")]["torch_version"] == torch.__version__
    assert "torch_version" not in devices[fleet.agent_id("plain")]
    # -v job lines name what was measured (logged once the report is answered)
    ok_line = f"(lut {layer.lut_key}, attempt 1): RESULT_STATUS_OK"
    wait_for(lambda: lines(fleet.agent_log("torch"), ok_line), 30, "the job line")
    assert lines(fleet.agent_log("plain"), f"(lut {layer.lut_key}, attempt 1) failed")


def test_job_lines_name_the_subnet_by_its_id():
    config = SubnetConfig.smallest(r=32)
    job = pb.Job(job_id="j", attempt=2, spec=pb.BenchSpec(subnet_config_json=config.to_json()))
    assert describe_job(job) == f"job j (subnet {config.id}, attempt 2)"
    reference = pb.Job(job_id="r", attempt=1, spec=pb.BenchSpec(reference="ref-v1"))
    assert describe_job(reference) == "job r (reference ref-v1, attempt 1)"
    digest = hashlib.sha256(b"m").hexdigest()
    bare = pb.Job(job_id="m", attempt=1, spec=pb.BenchSpec(model_digest=digest))
    assert describe_job(bare) == f"job m (model {digest[:12]}, attempt 1)"
