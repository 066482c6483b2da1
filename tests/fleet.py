"""A real fleet for tests: `ofa-coord serve` and `ofa-agent run` as separate processes on
loopback, a real SQLite file (or PostgreSQL database), real exported models. Everything
started is killed at the end."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from coordinator.services.jobs import BenchOptions, enqueue_model
from coordinator.services.local import start_agent, start_server
from coordinator.state import TERMINAL, BlobStore, Store, is_postgres_url
from ofa.config import SubnetConfig
from ofa.nn.export import export_lut_entry
from ofa.plan import layer_plan
from tests.cli_output import campaign_id, cli

BIN = Path(sys.executable).parent
QUICK = BenchOptions(
    warmup_runs=2,
    warmup_min_s=0.02,
    min_runs=10,
    min_time_s=0.05,
    max_time_s=2.0,
    target_precision=0.5,
)
# Quick measurement settings as `campaign create` flags, for tests that drive the CLI.
QUICK_FLAGS = (
    "--warmup-runs 2 --warmup-min-time 0.005 --min-runs 10 --min-time 0.01 --max-time 2 "
    "--max-ci 0.5"
).split()


def run_campaign(db: Path, *args, label: str = "cpu") -> str:
    """Create and start a campaign of quick measurements for `label`, wait until it is
    done; its id."""
    created = cli(
        "campaign", "create", "--db", db, "--label", label, *QUICK_FLAGS, *args, "--start"
    )
    cid = campaign_id(created)
    cli("campaign", "wait", "--db", db, cid, "--timeout", "300", "--interval", "0.2")
    return cid


# A w1.2 campaign at 160 px, each model measured once: what specialising with the official
# accuracy predictor needs from a device, at its smallest.
W12_AT_160 = ("--width", "1.2", "--resolutions", "160", "--repeats", "1", "--reference-every", "0")


def cpu_fleet(folder: Path) -> Fleet:
    """A coordinator and one agent `a` of label `cpu`; the caller closes it."""
    fleet = Fleet(folder)
    fleet.folder.mkdir()
    try:
        fleet.start_server()
        fleet.start_agent("a", labels=("cpu",))
        fleet.agent_id("a")
    except BaseException:
        fleet.close()
        raise
    return fleet


def wait_for(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.1):
    """Poll until `predicate()` is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def small_models(count: int, r: int = 64) -> list[tuple[str, bytes]]:
    """(LUT key, ONNX bytes) of the first `count` LUT entries of a small subnet."""
    return list(_lut_models(count, r))


@functools.cache
def _lut_models(count: int, r: int) -> tuple[tuple[str, bytes], ...]:
    """Exported once per test session: export is deterministic."""
    specs = {spec.lut_key: spec for spec in layer_plan(SubnetConfig.largest(r=r))}
    return tuple((key, export_lut_entry(spec).onnx) for key, spec in list(specs.items())[:count])


class Fleet:
    def __init__(
        self,
        folder: Path,
        heartbeat_s: float = 0.3,
        lease_seconds: float = 10.0,
        db: str | None = None,
    ) -> None:
        """A fleet on `db` (a postgresql:// URL; by default an SQLite file in `folder`)."""
        self.folder = folder
        self.db = db or folder / "fleet.db"
        self.heartbeat_s, self.lease_seconds = heartbeat_s, lease_seconds
        self.server: subprocess.Popen | None = None  # the coordinator started last
        self.servers: list[subprocess.Popen] = []
        self.address = ""
        self.agents: dict[str, subprocess.Popen] = {}
        self._store: Store | None = None

    # ----------------------------------------------------------------- coordinator
    def start_server(self, port: int = 0, extra: tuple[str, ...] = ()) -> str:
        """Start a coordinator (another one, when one runs: they share the database)."""
        if is_postgres_url(self.db):
            extra = ("--files", str(self.folder / "files"), *extra)
        running = any(server.poll() is None for server in self.servers)
        log = f"server-{len(self.servers)}.log" if running else "server.log"
        self.server, self.address = start_server(
            self.db,
            f"127.0.0.1:{port}",
            [
                "--heartbeat-interval",
                str(self.heartbeat_s),
                "--lease-seconds",
                str(self.lease_seconds),
                "-v",
                *extra,
            ],
            log=open(self.folder / log, "ab"),
        )
        self.servers.append(self.server)
        return self.address

    @property
    def port(self) -> int:
        return int(self.address.rsplit(":", 1)[1])

    def stop_server(self, sig: int = signal.SIGTERM) -> int:
        self.server.send_signal(sig)
        return self.server.wait(timeout=30)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.db)
        return self._store

    def token(self, name: str, labels: tuple[str, ...] | None = None) -> Path:
        """A token file for agent `name`, restricted to `labels` (None: any label)."""
        path = self.folder / f"{name}.token"
        path.write_text(self.store.create_token(name, labels=labels))
        return path

    def enqueue(
        self,
        models: list[tuple[str, bytes]],
        label: str = "cpu",
        options: BenchOptions = QUICK,
        **kwargs,
    ) -> list[str]:
        blobs = BlobStore(self.store)
        return [
            job
            for key, model in models
            for job in enqueue_model(
                self.store, blobs, model, label=label, lut_key=key, options=options, **kwargs
            )
        ]

    # ---------------------------------------------------------------------- agents
    def start_agent(
        self,
        name: str,
        labels: tuple[str, ...] = ("cpu",),
        token: Path | None = None,
        address: str | None = None,
        extra: tuple[str, ...] = (),
        executable: Path | None = None,
        disturbance_check: bool = False,
    ) -> subprocess.Popen:
        """An agent process. The suite's own processes share the cores with it, so it does
        not judge disturbance nor cool down unless the test is about that
        (`disturbance_check`)."""
        process = start_agent(
            address or self.address,
            token or self.token(name),
            self.folder / f"cache-{name}",
            labels,
            [
                "-v",
                *([] if disturbance_check else ["--no-disturbance-check", "--no-cooldown"]),
                *extra,
            ],
            log=open(self.folder / f"agent-{name}.log", "ab"),
            executable=[str(executable)] if executable else None,
        )
        self.agents[name] = process
        return process

    def agent_log(self, name: str) -> str:
        return (self.folder / f"agent-{name}.log").read_text()

    def agent_id(self, name: str) -> str:
        return wait_for(
            lambda: _read(self.folder / f"cache-{name}" / "agent-id"),
            30,
            f"agent {name} to register",
        )

    # --------------------------------------------------------------------- results
    def done(self, job_ids: list[str]) -> bool:
        return all(self.store.job(j)["state"] in TERMINAL for j in job_ids)

    def wait_done(self, job_ids: list[str], timeout: float = 60) -> None:
        wait_for(lambda: self.done(job_ids), timeout, f"{len(job_ids)} jobs to finish")

    def close(self) -> None:
        for process in [*self.agents.values(), *self.servers]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        if self._store is not None:
            self._store.close()


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        return ""


def kill9(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
