"""`make test-arm`: the agent as a real aarch64 process serves real jobs.

Runs with the host's venv, inside `tools/arm64/rootfs.sh with CACHE` (the arm64 root
filesystem is built and mounted; this script never mounts anything). It installs the agent
from the working tree into a venv in the chroot, starts a coordinator on the host's loopback,
starts `ofa-agent run` in the chroot (an aarch64 Python under qemu-user) and runs a small LUT
campaign through it. Nothing is mocked. Each step is printed as it starts; a failure names
the step, shows the agent's log and exits 1. Logs and the fleet database stay in
CACHE/last-run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from coordinator.services.campaigns import campaign_status, render_progress
from coordinator.services.local import start_agent, start_server
from coordinator.state import Store

ROOT = Path(__file__).resolve().parents[2]
ROOTFS_SH = ROOT / "tools" / "arm64" / "rootfs.sh"
WORK = "/tmp/ofa-arm64-check"  # inside the chroot
VENV = "/opt/venv"  # inside the chroot
LABEL = "arm64-qemu"
RESOLUTION = 32  # the space's smallest: emulated ONNX Runtime is 100-650x slower
RUNS = 10  # timed runs per job: one block of the engine
AGENT_PACKAGES = {"ofa-fleet", "onnxruntime", "grpcio", "protobuf", "psutil", "numpy", "click"}
TRAINING_PACKAGES = {"torch", "onnx"}


class CheckFailed(Exception):
    pass


def expect(condition: object, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def run(command: list, what: str, timeout: float = 600) -> str:
    """Run a command; its stdout, or CheckFailed with the tail of its output."""
    done = subprocess.run(
        [str(c) for c in command], capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise CheckFailed(f"{what} exited with {done.returncode}:\n{tail}")
    return done.stdout


class ArmCheck:
    def __init__(self, cache: Path, timeout: float) -> None:
        self.cache, self.timeout = cache, timeout
        self.rootfs = cache / "rootfs"
        self.work = self.rootfs / WORK.lstrip("/")  # the same folder, seen from the host
        self.out = cache / "last-run"
        self.db = self.out / "fleet.db"
        self.server: subprocess.Popen | None = None
        self.agent: subprocess.Popen | None = None
        self.address = self.agent_id = self.campaign = ""
        self.ort_version = ""

    def chroot(self, *command, what: str) -> str:
        return run([ROOTFS_SH, "run", self.cache, *command], what)

    def coord(self, *args, what: str) -> str:
        return run([sys.executable, "-m", "coordinator", *args], what)

    # ---------------------------------------------------------------------- steps
    def install_agent(self) -> None:
        """A wheel of the working tree, installed with its `agent` extra into a venv in the
        chroot. The venv's dependencies are reused while the agent extra is unchanged; the
        project itself is always reinstalled."""
        shutil.rmtree(self.work, ignore_errors=True)
        (self.work / "dist").mkdir(parents=True)
        with tempfile.TemporaryDirectory() as tmp:  # a copy: the build never writes into the tree
            source = Path(tmp) / "src"
            shutil.copytree(
                ROOT,
                source,
                ignore=shutil.ignore_patterns(
                    ".venv", ".cache", ".git", "runs", "*.egg-info", "__pycache__", "build"
                ),
            )
            run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "wheel",
                    "--quiet",
                    "--no-deps",
                    "-w",
                    self.work / "dist",
                    source,
                ],
                "pip wheel",
            )
        (wheel,) = (self.work / "dist").glob("ofa_fleet-*.whl")
        wheel = f"{WORK}/dist/{wheel.name}"
        extra = [r for r in metadata.requires("ofa-fleet") if 'extra == "agent"' in r]
        deps = hashlib.sha256(json.dumps(sorted(extra)).encode()).hexdigest()
        stamp = self.rootfs / VENV.lstrip("/") / ".agent-deps"
        if stamp.exists() and stamp.read_text() == deps:
            print(f"   reusing {VENV}: the agent extra is unchanged", flush=True)
            self.chroot(
                f"{VENV}/bin/pip",
                "install",
                "--quiet",
                "--no-deps",
                "--force-reinstall",
                wheel,
                what="pip install (the project)",
            )
        else:
            print(f"   creating {VENV} (pip downloads aarch64 wheels, about a minute)", flush=True)
            shutil.rmtree(stamp.parent, ignore_errors=True)
            self.chroot("python3", "-m", "venv", VENV, what="python3 -m venv")
            self.chroot(
                f"{VENV}/bin/pip",
                "install",
                "--quiet",
                f"{wheel}[agent]",
                what="pip install .[agent]",
            )
            stamp.write_text(deps)
        listed = json.loads(
            self.chroot(f"{VENV}/bin/pip", "list", "--format=json", what="pip list")
        )
        names = {p["name"].lower() for p in listed}
        expect(AGENT_PACKAGES <= names, f"missing in the venv: {AGENT_PACKAGES - names}")
        expect(not TRAINING_PACKAGES & names, f"the agent venv has {TRAINING_PACKAGES & names}")

    def agent_info(self) -> None:
        """`ofa-agent info` in the chroot: an aarch64 Python with onnxruntime, no torch."""
        info = json.loads(self.chroot(f"{VENV}/bin/ofa-agent", "info", what="ofa-agent info"))
        expect(
            info.get("machine") == "aarch64",
            f"ofa-agent info says machine {info.get('machine')!r}, not aarch64",
        )
        expect(info.get("onnxruntime_version"), "ofa-agent info has no onnxruntime_version")
        expect("torch_version" not in info, "ofa-agent info found torch")
        self.ort_version = info["onnxruntime_version"]
        print(
            f"   {info['machine']}, Python {info.get('python_version')}, "
            f"onnxruntime {self.ort_version}, cpu {info.get('cpu_model')!r}",
            flush=True,
        )

    def start_coordinator(self) -> None:
        """`ofa-coord serve` on the host's loopback; the chroot shares the host's network.
        Long leases and a lenient offline rule: an emulated agent is slow, not lost."""
        shutil.rmtree(self.out, ignore_errors=True)
        self.out.mkdir(parents=True)
        self.server, self.address = start_server(
            self.db,
            "127.0.0.1:0",
            [
                "--heartbeat-interval",
                "5",
                "--missed-heartbeats",
                "6",
                "--lease-seconds",
                "300",
                "-v",
            ],
            log=open(self.out / "server.log", "ab"),
        )
        print(f"   listening on {self.address}", flush=True)

    def start_agent(self) -> None:
        """`ofa-agent run` inside the chroot, with a token minted by `ofa-coord token create`;
        waits until it has registered."""
        self.coord(
            "token",
            "create",
            "--db",
            self.db,
            "--name",
            LABEL,
            "--label",
            LABEL,
            "--out",
            self.work / "agent.token",
            what="ofa-coord token create",
        )
        self.agent = start_agent(
            self.address,
            Path(WORK) / "agent.token",
            Path(WORK) / "agent-cache",
            [LABEL],
            ["-v"],
            log=open(self.out / "agent.log", "ab"),
            executable=[str(ROOTFS_SH), "run", str(self.cache), f"{VENV}/bin/ofa-agent"],
        )
        id_file = self.work / "agent-cache" / "agent-id"
        deadline = time.monotonic() + 120
        while not id_file.exists():
            expect(self.agent.poll() is None, f"the agent exited with {self.agent.returncode}")
            expect(time.monotonic() < deadline, "the agent did not register within 120 s")
            time.sleep(0.5)
        self.agent_id = id_file.read_text().strip()
        print(f"   registered as {self.agent_id}", flush=True)

    def device_info(self) -> None:
        """What the agent reported at registration, as `ofa-coord devices` shows it."""
        agents = json.loads(
            self.coord("devices", "--db", self.db, "--format", "json", what="ofa-coord devices")
        )
        (agent,) = [a for a in agents if a["id"] == self.agent_id] or [None]
        expect(agent, f"ofa-coord devices does not list agent {self.agent_id}")
        device = agent["device"]
        expect(
            device.get("machine") == "aarch64",
            f"the agent registered machine {device.get('machine')!r}, not aarch64",
        )
        expect(
            device.get("onnxruntime_version") == self.ort_version,
            f"registered onnxruntime {device.get('onnxruntime_version')!r}, "
            f"ofa-agent info said {self.ort_version!r}",
        )
        expect(agent["labels"] == [LABEL], f"registered labels {agent['labels']}")

    def run_campaign(self) -> None:
        """All 96 LUT entries at 32 px, once each. A time cap of 1 us, shorter than any run,
        ends the warm-up at once and the timed runs after the engine's first block of 10, so
        every result must hold exactly 10 samples (the cold first run is still timed apart).
        The agent still re-times its reference model every 10 jobs."""
        created = self.coord(
            "campaign",
            "create",
            "--db",
            self.db,
            "--name",
            "arm64 check",
            "--label",
            LABEL,
            "--workload",
            "lut",
            "--resolutions",
            RESOLUTION,
            "--repeats",
            1,
            "--reference-every",
            0,
            "--min-runs",
            RUNS,
            "--max-time",
            1e-6,
            "--start",
            what="ofa-coord campaign create",
        )
        self.campaign = created.split()[1]
        store = Store(self.db)
        deadline = time.monotonic() + self.timeout
        last_print = 0.0
        while True:
            status = campaign_status(store, self.campaign)
            if status["finished"] == status["total"] or time.monotonic() - last_print >= 15:
                print(f"   {render_progress(status)}", flush=True)
                last_print = time.monotonic()
            if status["finished"] == status["total"]:
                break
            expect(self.agent.poll() is None, f"the agent exited with {self.agent.returncode}")
            expect(
                time.monotonic() < deadline,
                f"the campaign did not finish within {self.timeout:.0f} s",
            )
            time.sleep(1)
        expect(status["failed"] == 0, f"{status['failed']} jobs failed: {status['errors']}")

    def check_results(self) -> None:
        """`ofa-coord results export`: one accepted result per job, from this agent, each
        with exactly the runs asked for as raw samples, and a complete LUT to export."""
        path = self.out / "results.jsonl"
        self.coord(
            "results",
            "export",
            "--db",
            self.db,
            "--campaign",
            self.campaign,
            "--format",
            "jsonl",
            "--out",
            path,
            what="ofa-coord results export",
        )
        every = [json.loads(line) for line in path.read_text().splitlines()]
        # a measurement judged disturbed (the host's other work) is kept as evidence only,
        # and its job measured again
        records = [r for r in every if r["status"] != "disturbed"]
        expect(all(not r["accepted"] for r in every if r not in records), "an accepted disturbed")
        total = campaign_status(Store(self.db), self.campaign)["total"]
        expect(len(records) == total, f"{len(records)} clean results for {total} jobs")
        for r in records:
            where = f"result for {r['key']}"
            expect(
                r["status"] == "ok" and r["accepted"],
                f"{where}: {r['status']}, accepted {r['accepted']}",
            )
            expect(r["agent_id"] == self.agent_id, f"{where}: from agent {r['agent_id']}")
            expect(r["kind"] == "lut" and r["r"] == RESOLUTION, f"{where}: {r['kind']} r={r['r']}")
            expect(
                len(r["samples_ns"]) == RUNS == r["n"],
                f"{where}: {len(r['samples_ns'])} raw samples (n={r['n']}), expected {RUNS}",
            )
            expect(all(s > 0 for s in r["samples_ns"]), f"{where}: a non-positive sample")
            expect(
                r["runtime_versions"].get("onnxruntime") == self.ort_version,
                f"{where}: measured with {r['runtime_versions']}",
            )
        medians = sorted(r["median_ms"] for r in records)
        print(
            f"   {len(records)} results, {RUNS} samples each; median latency "
            f"{medians[0]:.2f}..{medians[-1]:.2f} ms (emulated: says nothing about a Pi)",
            flush=True,
        )
        self.coord(
            "lut",
            "export",
            "--db",
            self.db,
            "--device",
            LABEL,
            "--out",
            self.out / "lut",
            what="ofa-coord lut export",
        )

    def stop_agent(self) -> None:
        """SIGTERM: the agent leaves its loop and exits 0."""
        self.agent.send_signal(signal.SIGTERM)
        try:
            code = self.agent.wait(timeout=60)
        except subprocess.TimeoutExpired:
            raise CheckFailed("the agent did not exit within 60 s of SIGTERM") from None
        expect(code == 0, f"the agent exited with {code} on SIGTERM")

    # --------------------------------------------------------------------- driver
    def close(self) -> None:
        """Kill whatever is still running, so that the chroot can be unmounted."""
        for process in (self.agent, self.server):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait(timeout=30)

    def agent_log_tail(self, lines: int = 30) -> str:
        path = self.out / "agent.log"
        return (
            "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            if path.exists()
            else "(no agent log)"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=ROOT / ".cache" / "arm64")
    parser.add_argument("--timeout", type=float, default=300, help="Seconds the campaign may take.")
    args = parser.parse_args()
    check = ArmCheck(args.cache.resolve(), args.timeout)
    steps = [
        ("install the agent into the arm64 venv", check.install_agent),
        ("ofa-agent info in the chroot", check.agent_info),
        ("start the coordinator on loopback", check.start_coordinator),
        ("start ofa-agent run in the chroot", check.start_agent),
        ("the registered device is aarch64", check.device_info),
        (f"LUT campaign at {RESOLUTION} px", check.run_campaign),
        ("results, raw samples and LUT export", check.check_results),
        ("stop the agent with SIGTERM", check.stop_agent),
    ]
    # SIGTERM (a CI timeout, say) cleans up like Ctrl-C, so the chroot can be unmounted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    try:
        for i, (name, step) in enumerate(steps, 1):
            print(f"== arm64 check {i}/{len(steps)}: {name}", flush=True)
            step_start = time.monotonic()
            try:
                step()
            except (CheckFailed, subprocess.TimeoutExpired, OSError, ValueError) as exc:
                print(f"FAILED at step {i} ({name}): {exc}", file=sys.stderr)
                print(
                    f"--- agent log ({check.out / 'agent.log'}), last lines:\n"
                    f"{check.agent_log_tail()}",
                    file=sys.stderr,
                )
                return 1
            except KeyboardInterrupt:
                print(f"interrupted at step {i} ({name})", file=sys.stderr)
                return 130
            print(f"   ok ({time.monotonic() - step_start:.0f} s)", flush=True)
    finally:
        check.close()
    print(f"== arm64 check passed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
