"""The demo's flow: the main job, on this machine.

It starts a coordinator on a SQLite file in a run folder and two agents as separate
processes, labelled as two device classes (`cpu-1t` measures with 1 thread, `cpu-2t` with
2). For each device, one after the other so they do not disturb each other's timings, it
runs a LUT campaign and a random-subnet campaign and exports the LUT. Given an accuracy
predictor, it measures that predictor's supernet width and ends with what OFA is for: the
most accurate subnet for each device at two latency budgets, measured on the device.

Each step hands the next what it made in memory (the LUT as a latency model, the chosen
subnets as a campaign's workload); the files it writes are the run's outputs.
"""

from __future__ import annotations

import contextlib
import json
import signal
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.services.campaigns import CampaignSpec, create_campaign
from coordinator.services.jobs import BenchOptions
from coordinator.services.local import start_agent, start_server
from coordinator.services.lut_export import collect_lut, write_lut
from coordinator.services.predictor_data import device_lut, measured_subnets
from coordinator.services.results_export import campaign_results
from coordinator.services.specialise import SpecialiseSettings, allowed_resolutions, specialise
from coordinator.services.waiting import Progress, follow_campaign
from coordinator.state import BlobStore, Devices, Store
from ofa.accuracy import AccuracyPredictor
from ofa.config import SubnetConfig
from ofa.latency_model import BlockTable, LutSum
from ofa.space import MOBILENET_V3

__all__ = ["DEVICES", "DemoSettings", "DemoRun", "Reporter", "load_accuracy_predictor", "run_demo"]

DEVICES = (("cpu-1t", 1), ("cpu-2t", 2))
REGISTER_TIMEOUT_S = 60
BUDGET_SHARES = (0.3, 0.6)  # of the way from a device's fastest to its slowest subnet


@dataclass(frozen=True)
class DemoSettings:
    """What each device measures: LUT resolutions (random subnets are sampled among them),
    random subnets, repeats, seconds of timed and warm-up runs per measurement, seed."""

    resolutions: tuple[int, ...] = (160,)
    subnets: int = 10
    repeats: int = 2
    min_time_s: float = 0.3
    warmup_time_s: float = 0.2
    seed: int = 0


@dataclass(frozen=True)
class Reporter:
    """Where the flow reports: `say` a line, `progress` a look at the running campaign."""

    say: Callable[[str], None]
    progress: Callable[[Progress], None]


@dataclass(frozen=True)
class DemoRun:
    """What summary.json holds, and where the run's files are."""

    folder: Path
    wall_s: float
    width: float
    devices: list[dict[str, Any]]
    specialised: list[dict[str, Any]]


def load_accuracy_predictor(path: str | Path, resolutions: tuple[int, ...]) -> AccuracyPredictor:
    """The predictor, checked against the demo's resolutions before anything is measured."""
    try:
        accuracy = AccuracyPredictor.load(path)
        if accuracy.family != MOBILENET_V3.name:
            raise ValueError(
                f"the demo measures MobileNetV3 subnets; this predictor is for {accuracy.supernet}"
            )
        accuracy.predict([SubnetConfig.smallest(r=r, w=accuracy.width) for r in resolutions])
    except ValueError as exc:
        raise ValueError(f"--acc-predictor: {exc}") from None
    return accuracy


def run_demo(
    settings: DemoSettings, accuracy: AccuracyPredictor | None, run_dir: Path, report: Reporter
) -> DemoRun:
    """The whole flow in a new folder under `run_dir`; writes summary.json there."""
    started = time.perf_counter()
    width = accuracy.width if accuracy else 1.0
    folder = run_dir / time.strftime("demo-%Y%m%d-%H%M%S")
    folder.mkdir(parents=True)
    store = Store(folder / "fleet.db")
    with contextlib.ExitStack() as logs:
        server, address = start_server(
            folder / "fleet.db",
            # a disturbed measurement (the demo's own processes share the cores) is taken
            # again after 1 s: a fleet's 10 s default would idle a short demo
            args=["-v", "--remeasure-cooldown", "1"],
            log=logs.enter_context(open(folder / "coordinator.log", "ab")),
        )
        agents = []
        try:
            for label, threads in DEVICES:
                token = folder / f"{label}.token"
                token.write_text(store.create_token(label, labels=[label]))
                log = logs.enter_context(open(folder / f"agent-{label}.log", "ab"))
                agents.append(
                    start_agent(
                        address,
                        token,
                        folder / f"agent-{label}",
                        [label],
                        ["--threads", str(threads), "-v"],
                        log=log,
                    )
                )
            report.say(
                f"coordinator on {address}, agents {', '.join(label for label, _ in DEVICES)}; "
                f"run folder {folder}"
            )
            _await_agents(store, folder)
            demo = _Demo(store, folder, settings, width, report)
            devices = [demo.profile(label, threads) for label, threads in DEVICES]
            chosen = (
                [row for label, _ in DEVICES for row in demo.specialise(label, accuracy)]
                if accuracy
                else []
            )
        finally:
            for process in [*agents, server]:  # agents first: they finish their job and report
                _stop(process)
    run = DemoRun(folder, time.perf_counter() - started, width, devices, chosen)
    (folder / "summary.json").write_text(
        json.dumps(
            {"wall_s": run.wall_s, "width": width, "devices": devices, "specialised": chosen},
            indent=2,
        )
    )
    return run


def _await_agents(store: Store, folder: Path) -> None:
    deadline = time.monotonic() + REGISTER_TIMEOUT_S
    while len(store.list_agents()) < len(DEVICES):
        if time.monotonic() > deadline:
            raise TimeoutError(f"agents did not register; see {folder}/agent-*.log")
        time.sleep(0.2)


def _stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _repeat_spread(rows: list[dict]) -> float | None:
    """Median over models of (max - min) / median of their repeat medians."""
    by_key: dict[str, list[float]] = {}
    for row in rows:
        by_key.setdefault(row["key"], []).append(row["median_ms"])
    spreads = [(max(v) - min(v)) / statistics.median(v) for v in by_key.values() if len(v) > 1]
    return statistics.median(spreads) if spreads else None


class _Demo:
    """The per-device steps, on one running fleet; keeps each device's LUT latency model
    from its profile for its specialisation."""

    def __init__(
        self, store: Store, folder: Path, settings: DemoSettings, width: float, report: Reporter
    ) -> None:
        self.store, self.folder, self.settings, self.width = store, folder, settings, width
        self.report = report
        self.latency: dict[str, LutSum] = {}

    def _options(self, threads: int) -> BenchOptions:
        return BenchOptions(
            threads=threads,
            warmup_runs=5,
            warmup_min_s=self.settings.warmup_time_s,
            min_runs=30,
            min_time_s=self.settings.min_time_s,
        )

    def _run(self, spec: CampaignSpec) -> tuple[str, float]:
        """Run the campaign to its end; its id and wall time."""
        started = time.perf_counter()
        campaign_id = create_campaign(self.store, BlobStore(self.store), spec, start=True)
        self.report.say(f"campaign {campaign_id}: {spec.name}")
        for progress in follow_campaign(self.store, campaign_id, interval_s=0.5):
            self.report.progress(progress)
        return campaign_id, time.perf_counter() - started

    def profile(self, label: str, threads: int) -> dict[str, Any]:
        """LUT and random-subnet campaigns, the LUT exported, and how the LUT sum compares
        with the subnets measured whole."""
        s = self.settings
        common: dict[str, Any] = {
            "targets": (Devices(label=label),),
            "resolutions": s.resolutions,
            "width": self.width,
            "repeats": s.repeats,
            "seed": s.seed,
            "options": self._options(threads),
        }
        lut_id, lut_s = self._run(CampaignSpec(name=f"{label} LUT", workload="lut", **common))
        random_id, random_s = self._run(
            CampaignSpec(
                name=f"{label} random subnets", workload="random", count=s.subnets, **common
            )
        )
        lut = collect_lut(self.store, label, lut_id)
        out = self.folder / f"lut-{label}"
        files = write_lut(lut, out, "ofa-yaml") + write_lut(lut, out, "json")
        means, _, width, provenance = device_lut(lut)
        latency = LutSum.fit(BlockTable.from_lut(means, width), provenance=provenance)
        self.latency[label] = latency
        lut_rows = [
            r for r in campaign_results(self.store, lut_id) if r["kind"] == "lut" and r["accepted"]
        ]
        subnet_rows = [
            r
            for r in campaign_results(self.store, random_id)
            if r["kind"] == "subnet" and r["accepted"]
        ]
        measured: dict[str, list[float]] = {}
        for row in subnet_rows:
            measured.setdefault(row["key"], []).append(row["median_ms"])
        lut_sums = latency.predict([SubnetConfig.from_json(key) for key in measured])
        ratios = [
            float(lut_sum) / statistics.median(values)
            for lut_sum, values in zip(lut_sums, measured.values(), strict=True)
        ]
        return {
            "label": label,
            "threads": threads,
            "lut_campaign": lut_id,
            "random_campaign": random_id,
            "lut_entries": len(lut.entries),
            "lut_missing": len(lut.missing),
            "lut_drift_flagged": sum(e.drift_flag for e in lut.entries),
            "subnets": len(measured),
            "lut_wall_s": lut_s,
            "random_wall_s": random_s,
            "lut_repeat_spread": _repeat_spread(lut_rows),
            "subnet_repeat_spread": _repeat_spread(subnet_rows),
            "subnet_median_ms": statistics.median(statistics.median(v) for v in measured.values()),
            "lut_sum_over_measured": {
                "median": statistics.median(ratios),
                "min": min(ratios),
                "max": max(ratios),
            },
            "files": [str(p) for p in files],
        }

    def specialise(self, label: str, accuracy: AccuracyPredictor) -> list[dict[str, Any]]:
        """The best subnet at 30% and 60% of the way from the device's fastest to its
        slowest subnet (by its LUT), then those subnets measured on the device."""
        latency = self.latency[label]
        threads = dict(DEVICES)[label]
        try:
            resolutions = allowed_resolutions(latency, None)
            ends = latency.predict(
                [
                    make(r=r, w=latency.width)
                    for r in resolutions
                    for make in (SubnetConfig.smallest, SubnetConfig.largest)
                ]
            )
            budgets = [
                round(float(ends.min() + share * (ends.max() - ends.min())), 2)
                for share in BUDGET_SHARES
            ]
            chosen = specialise(
                latency,
                accuracy,
                budgets,
                self.folder / "specialised" / label,
                {"device": label, "lut": str(self.folder / f"lut-{label}")},
                SpecialiseSettings(resolutions, seed=self.settings.seed),
            )
        except ValueError as exc:  # the search's refusals name what to change
            raise ValueError(f"specialisation: {exc}") from None
        campaign_id, _ = self._run(
            CampaignSpec(
                name=f"{label} specialised subnets",
                targets=(Devices(label=label),),
                workload="configs",
                subnets=tuple(dict.fromkeys(choice.config.to_json() for choice in chosen)),
                repeats=self.settings.repeats,
                reference_every=0,
                seed=self.settings.seed,
                options=self._options(threads),
            )
        )
        measured = {
            m.config.id: m.median_ms for m in measured_subnets(self.store, label, [campaign_id])
        }
        return [
            {"label": label, **choice.row(), "measured_ms": measured.get(choice.config.id)}
            for choice in chosen
        ]
