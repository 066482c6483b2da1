"""The agent's main loop: register, heartbeat, lease one job at a time, measure, report.

It never crashes on a bad job (the job is reported FAILED with the error), re-registers
when the coordinator has forgotten it, stops with exit code 3 on a setting that no retry can
fix (`Misconfigured`: the token, a label, TLS), and on SIGTERM finishes the job in hand (or
gives its lease back) before it exits. Between jobs it re-measures a fixed reference model and
reports the drift with every result.
"""

from __future__ import annotations

import logging
import random
import statistics
import threading
import time
from dataclasses import dataclass, fields, replace
from importlib import resources
from pathlib import Path

import grpc

from agent import __version__
from agent.cache import ModelCache
from agent.client import CALL_TIMEOUT_S, AuthError, FleetClient, Forgotten, Rejected
from agent.describe import describe_spec
from agent.device import device_info, peak_rss_bytes, reset_peak_rss, telemetry
from agent.disturbance import Evidence
from agent.link import Misconfigured, summary
from agent.measure import BenchSettings, gpu_index, measure
from agent.profile import PROFILE_RUNS, check_size, profile_nodes
from agent.retry import RETRYABLE, Backoff
from agent.settings import MISCONFIGURED
from proto.ofafleet.v1 import fleet_pb2 as pb

__all__ = [
    "AgentConfig",
    "Agent",
    "SPEC_SETTINGS",
    "settings_from_spec",
    "describe_job",
    "evidence_message",
]

log = logging.getLogger("ofa-agent")
# The engine's settings a job's spec can carry (BenchSpec's fields that BenchSettings has).
SPEC_SETTINGS = tuple(
    spec_field.name
    for spec_field in pb.BenchSpec.DESCRIPTOR.fields
    if spec_field.name in {f.name for f in fields(BenchSettings)}
)
REFERENCE_SETTINGS = BenchSettings(
    warmup_runs=5, warmup_min_s=0.05, min_runs=20, min_time_s=0.2, max_time_s=2.0
)
# The reference this much slower than its baseline: cool down first. Its checks vary by a
# few percent on a quiet 2-core VM, so a smaller limit would make a quiet device wait.
DRIFT_LIMIT = 0.10
COOLDOWN_STEP_S = 2.0
MAX_PROFILE_ERROR = 1000  # characters of why a profile failed
COOLDOWN_MAX_S = 120.0


@dataclass
class AgentConfig:
    coordinator: str
    token: str
    labels: list[str]
    cache_dir: Path
    threads: int = 1
    cache_max_bytes: int = 2 * 2**30
    tls_ca: bytes | None = None
    insecure: bool = False
    lease_wait_s: float = 20.0
    reference_every_jobs: int = 10
    reference_every_s: float = 300.0
    allow_torch: bool = False
    call_timeout_s: float = CALL_TIMEOUT_S
    disturbance_check: bool = True  # off: report OK whatever the evidence says
    pin_cores: bool = True  # pin the measuring threads to fixed cores where the OS allows
    cooldown: bool = True  # wait before a job while the device is hot or has drifted
    hot_c: float = 80.0  # a device reporting this temperature or more cools down first


def settings_from_spec(spec: pb.BenchSpec, threads: int = 1) -> BenchSettings:
    """The spec's settings: every BenchSpec field the engine has; where the spec leaves one at
    0 or '', the engine's default (and for `threads`, the agent's own)."""
    given = {name: value for name in SPEC_SETTINGS if (value := getattr(spec, name))}
    return replace(BenchSettings(threads=threads), **given)


def describe_job(job: pb.Job) -> str:
    """The job and what it measures, e.g. `job J (lut Conv-input:..., attempt 1)`."""
    return f"job {job.job_id} ({describe_spec(job.spec)}, attempt {job.attempt})"


class Agent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.stop = threading.Event()
        self.client = FleetClient(
            config.coordinator,
            config.token,
            self.stop,
            tls_ca=config.tls_ca,
            insecure=config.insecure,
            timeout_s=config.call_timeout_s,
        )
        self.cache = ModelCache(config.cache_dir, config.cache_max_bytes)
        self.id_file = Path(config.cache_dir) / "agent-id"
        self.agent_id = (
            self.id_file.read_text(errors="replace").strip() if self.id_file.exists() else ""
        )  # the coordinator checks it
        self._registered = False
        self.heartbeat_s = 5.0
        self.current_leases: set[str] = set()
        self.lost_leases: set[str] = set()
        self._fatal: Misconfigured | None = None
        self._register_lock = threading.Lock()
        self._drift: pb.DriftCheck | None = None
        self._reference_medians: list[float] = []
        self._jobs_since_reference = 0
        self._reference_at = 0.0
        self._drift_cooled = False  # this reference check's drift was cooled down for

    # ----------------------------------------------------------------- lifecycle
    def request_stop(self) -> None:
        """Finish (or release) the job in hand, then leave the main loop."""
        self.stop.set()

    def run(self) -> int:
        """Serve jobs until stopped. Returns the process exit code."""
        registered = False
        failures = 0
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        try:
            while not self.stop.is_set():
                try:
                    if not registered:
                        self._register()
                        registered = True
                        if not heartbeat.is_alive():
                            heartbeat.start()
                            self._check_reference()
                    jobs = self.client.lease_jobs(self.agent_id, 1, self.config.lease_wait_s)
                    failures = 0
                    for job in jobs:
                        self._serve(job)
                    if jobs:
                        self._maybe_check_reference()
                except Forgotten:
                    registered = False
                    continue
                except grpc.RpcError as exc:  # an answer we did not expect: back off, go on
                    if self.stop.is_set():  # a call cut short by stopping
                        break
                    failures += 1
                    pause = Backoff().delay(failures, random.Random())
                    log.error("coordinator error %s; retrying in %.1f s", summary(exc), pause)
                    self.stop.wait(pause)
        except Misconfigured as exc:
            self._fatal = exc
        finally:
            self.stop.set()
            self.client.close()
        if self._fatal is not None:
            log.error("%s; stopping", self._fatal)
            return MISCONFIGURED
        log.info("stopped%s", f" (agent {self.agent_id})" if self.agent_id else "")
        return 0

    def _register(self) -> None:
        with self._register_lock:
            try:
                reply = self.client.register(
                    self.agent_id,
                    self.config.labels,
                    device_info(with_torch=self.config.allow_torch),
                    self.config.threads,
                    __version__,
                )
            except Misconfigured as exc:
                raise Misconfigured(f"{exc}{self._register_hint(exc)}") from None
            self.agent_id = reply.agent_id
            self.heartbeat_s = reply.heartbeat_interval_s or self.heartbeat_s
            self.id_file.parent.mkdir(parents=True, exist_ok=True)
            self.id_file.write_text(self.agent_id)
            log.info(
                "registered %sas %s (labels %s) with %s",
                "again (the coordinator had forgotten it) " if self._registered else "",
                self.agent_id,
                ", ".join(self.config.labels) or "none",
                self.config.coordinator,
            )
            self._registered = True

    def _register_hint(self, exc: Misconfigured) -> str:
        """What to change, for the refusals whose cause is on this side."""
        if isinstance(exc, AuthError) and "labels:" in str(exc):  # labels its token refuses
            wanted = " ".join(f"--label {label}" for label in self.config.labels)
            return f"; change --label, or use a token created with {wanted}"
        if isinstance(exc, AuthError):
            if exc.wrong_agent and self.id_file.exists():
                return (
                    f" (the agent id {self.agent_id} came from {self.id_file}; if another "
                    "agent uses that folder, give each agent its own --cache-dir, or leave "
                    "--cache-dir out to get one per token)"
                )
            return ""
        if "labels" in str(exc):
            return "; change --label"
        if "agent_id" in str(exc):
            return f"; delete {self.id_file} (it is not an agent id)"
        return ""

    def _heartbeat_loop(self) -> None:
        while not self.stop.wait(self.heartbeat_s):
            try:
                reply = self.client.heartbeat(
                    self.agent_id, sorted(self.current_leases), telemetry()
                )
                self.heartbeat_s = reply.heartbeat_interval_s or self.heartbeat_s
                self.lost_leases.update(reply.lost_lease_ids)
            except Forgotten:
                try:
                    self._register()
                except Misconfigured as exc:
                    self._fatal = exc
                    self.stop.set()
                except Exception as exc:  # the main loop will meet the same problem
                    log.warning("re-registering failed: %s", summary(exc))
            except Misconfigured as exc:  # e.g. revoked while running: stop, exit with code 3
                self._fatal = exc
                self.stop.set()
            except grpc.RpcError as exc:  # an outage is logged by the link; the next one may pass
                if exc.code() not in RETRYABLE:
                    log.warning("heartbeat failed: %s", summary(exc))
            except Exception as exc:  # a missed heartbeat is not fatal
                log.warning("heartbeat failed: %s", summary(exc))

    # ---------------------------------------------------------------------- jobs
    def _serve(self, job: pb.Job) -> None:
        started = time.perf_counter_ns()
        self.current_leases.add(job.lease_id)
        try:
            if self.stop.is_set():
                result = pb.Result(status=pb.RESULT_STATUS_RELEASED, message="agent shutting down")
            else:
                result = self._execute(job)
            result.lease_to_report_ns = time.perf_counter_ns() - started
            if self._drift is not None:
                result.drift.CopyFrom(self._drift)
            reply = self.client.report(self.agent_id, job, result)
            log.debug(
                "%s: %s%s",
                describe_job(job),
                pb.ResultStatus.Name(result.status),
                " (late)" if reply.late else "",
            )
            self._jobs_since_reference += 1
        except (Misconfigured, Forgotten):
            raise
        except Rejected as exc:  # the coordinator no longer knows this lease: drop the result
            log.warning("%s: result dropped: %s", describe_job(job), exc)
        except Exception as exc:  # the coordinator is unreachable; the lease will expire
            log.error("%s: could not report: %s", describe_job(job), summary(exc))
        finally:
            self.current_leases.discard(job.lease_id)
            self.lost_leases.discard(job.lease_id)

    def _execute(self, job: pb.Job) -> pb.Result:
        """Measure one job; any failure becomes a FAILED result with the error."""
        spec = job.spec
        try:
            settings = replace(
                settings_from_spec(spec, self.config.threads), pin_cores=self.config.pin_cores
            )
            if settings.runtime == "torch" and not self.config.allow_torch:
                raise PermissionError(
                    "runtime: torch jobs are disabled on this agent (start it with --allow-torch)"
                )
            model = self._fetch(spec.model_digest, spec.model_size)
            shapes = [list(t.dims) for t in spec.inputs] or None
            cooldown_s = self._cool_down() if self.config.cooldown else 0.0
            gpu = gpu_index(settings)
            before = telemetry(gpu)
            windowed = reset_peak_rss()  # else the peak is not this job's: not recorded
            measurement = measure(
                model, settings, shapes, cancelled=lambda: job.lease_id in self.lost_leases
            )
            cancelled = measurement.stop_reason == "cancelled"
            evidence = measurement.evidence
            if evidence.disturbed:
                log.info("%s disturbed: %s", describe_job(job), "; ".join(evidence.reasons))
                if not self.config.disturbance_check:
                    evidence.reasons = []  # an OK result names no reasons
            result = pb.Result(
                status=pb.RESULT_STATUS_DISTURBED if evidence.disturbed else pb.RESULT_STATUS_OK,
                evidence=evidence_message(evidence),
                conditions=pb.Conditions(
                    pinned_cores=measurement.pinned_cores, cooldown_s=cooldown_s
                ),
                samples_ns=measurement.samples_ns,
                session_create_ns=measurement.session_create_ns,
                first_run_ns=measurement.first_run_ns,
                warmup_runs=measurement.warmup_runs,
                warmup_ns=measurement.warmup_ns,
                stop_reason=measurement.stop_reason,
                peak_rss_bytes=(peak_rss_bytes() or 0) if windowed else 0,
                before=pb.Telemetry(**before),
                after=pb.Telemetry(**telemetry(gpu)),
                runtime_versions=measurement.runtime_versions,
            )
            if spec.profile and result.status == pb.RESULT_STATUS_OK and not cancelled:
                result.profile.CopyFrom(self._profile(job, model, settings, shapes))
            return result
        except Exception as exc:  # a bad job must never take the agent down
            log.warning("%s failed: %s", describe_job(job), exc)
            return pb.Result(
                status=pb.RESULT_STATUS_FAILED, message=f"{type(exc).__name__}: {exc}"[:4000]
            )

    def _profile(
        self, job: pb.Job, model: Path, settings: BenchSettings, shapes: list | None
    ) -> pb.Profile:
        """The model's per-node profile; one that fails says why instead of failing the
        measurement taken before it."""
        try:
            nodes = profile_nodes(model, settings, shapes)
            check_size(nodes)
        except Exception as exc:
            log.warning("%s: no profile: %s", describe_job(job), exc)
            return pb.Profile(error=f"{type(exc).__name__}: {exc}"[:MAX_PROFILE_ERROR])
        return pb.Profile(runs=PROFILE_RUNS, nodes=[pb.NodeTime(**vars(node)) for node in nodes])

    def _fetch(self, digest: str, size: int) -> Path:
        cached = self.cache.get(digest)
        if cached is not None:
            return cached
        data = self.client.read_blob(digest, size)
        if len(data) != size:
            raise ValueError(f"model {digest}: got {len(data)} bytes, the job says {size}")
        return self.cache.put(digest, data)

    def _cool_down(self) -> float:
        """Wait while the device reports heat (`hot_c` or more), checking every
        COOLDOWN_STEP_S for at most COOLDOWN_MAX_S; and once per reference check that found
        the reference model more than DRIFT_LIMIT slower than its baseline, one step, after
        which it is measured again. (Looping on drift would idle a device whose reference
        is merely noisy.) Returns the seconds waited."""
        waited = 0.0
        while waited < COOLDOWN_MAX_S and not self.stop.is_set():
            temperature = telemetry().get("temperature_c")
            hot = temperature is not None and temperature >= self.config.hot_c
            drift = self._drift.drift if self._drift is not None else 0.0
            drifted = drift > DRIFT_LIMIT and not self._drift_cooled
            if not (hot or drifted):
                break
            log.info(
                "cooling down %.0f s: %s",
                COOLDOWN_STEP_S,
                f"{temperature:.0f} C" if hot else f"reference drift {drift:+.1%}",
            )
            self.stop.wait(COOLDOWN_STEP_S)
            waited += COOLDOWN_STEP_S
            if drifted:
                self._check_reference()
                self._drift_cooled = True  # until the next periodic check
        return waited

    # ------------------------------------------------------------ drift reference
    def _maybe_check_reference(self) -> None:
        due = (
            self._jobs_since_reference >= self.config.reference_every_jobs
            or time.monotonic() - self._reference_at >= self.config.reference_every_s
        )
        if due and not self.stop.is_set():
            self._check_reference()

    def _check_reference(self) -> None:
        model = resources.files("agent").joinpath("data/reference.onnx").read_bytes()
        median = measure(model, REFERENCE_SETTINGS).stats()["median_ms"]
        self._reference_medians.append(median)
        baseline = statistics.median(self._reference_medians)  # robust to one odd check
        self._drift = pb.DriftCheck(
            baseline_median_ms=baseline,
            median_ms=median,
            drift=median / baseline - 1,
            measured_unix_ns=time.time_ns(),
        )
        self._jobs_since_reference = 0
        self._reference_at = time.monotonic()
        self._drift_cooled = False
        log.debug("reference model: %.3f ms (drift %+.1f%%)", median, 100 * self._drift.drift)


def evidence_message(evidence: Evidence) -> pb.Evidence:
    """The wire form of a measurement's evidence (absent values stay absent)."""
    given = {k: v for k, v in vars(evidence).items() if v is not None}
    return pb.Evidence(**given)
