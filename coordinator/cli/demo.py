"""`ofa-coord demo`: the main job, on this machine.

It starts a coordinator on a SQLite file in a run folder and two agents as separate
processes, labelled as two device classes (`cpu-1t` measures with 1 thread, `cpu-2t` with
2). For each device, one after the other so they do not disturb each other's timings, it
runs a LUT campaign and a random-subnet campaign, then exports both LUTs and prints what was
measured, how long it took, how much the repeats spread, and where the files are. Given an
accuracy predictor, it measures that predictor's supernet width and ends with what OFA is for:
the most accurate subnet for each device at two latency budgets, measured on the device.
"""

from __future__ import annotations

import contextlib
import json
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

from coordinator.state import BlobStore
from coordinator.services.campaigns import (CampaignSpec, Target, campaign_status, create_campaign,
                                   render_progress)
from coordinator.services.jobs import BenchOptions
from coordinator.services.local import start_agent, start_server
from coordinator.services.lut_export import collect_lut, write_lut
from coordinator.cli.options import RESOLUTIONS, FiniteFloat
from coordinator.services.predictor_data import measured_subnets
from coordinator.services.results_export import campaign_results
from coordinator.cli.specialize import allowed_resolutions, lut_folder_predictor, specialise
from coordinator.state import Store
from ofa.accuracy import AccuracyPredictor
from ofa.config import SubnetConfig
from ofa.lut import LatencyTable

DEVICES = (("cpu-1t", 1), ("cpu-2t", 2))


def _wait(store: Store, campaign_id: str) -> dict:
    live = sys.stderr.isatty()
    last = 0.0
    while True:
        status = campaign_status(store, campaign_id)
        if live:
            click.echo("\r" + render_progress(status), nl=False, err=True)
        elif time.monotonic() - last > 15:
            click.echo(render_progress(status), err=True)
            last = time.monotonic()
        if status["total"] and status["finished"] == status["total"]:
            click.echo(("\r" if live else "") + render_progress(status), err=True)
            return status
        time.sleep(0.5)


def _run(store: Store, spec: CampaignSpec) -> tuple[str, float]:
    started = time.perf_counter()
    campaign_id = create_campaign(store, BlobStore(store), spec, start=True)
    click.echo(f"campaign {campaign_id}: {spec.name}", err=True)
    _wait(store, campaign_id)
    return campaign_id, time.perf_counter() - started


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


@click.command()
@click.option("--resolutions", type=RESOLUTIONS, default="160", show_default=True,
              help="Resolutions of the LUT campaigns (random subnets are sampled among them).")
@click.option("--subnets", type=click.IntRange(min=1), default=10, show_default=True,
              help="Random subnets measured end to end per device.")
@click.option("--repeats", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--min-time", type=FiniteFloat(min=0), default=0.3, show_default=True,
              help="Seconds of timed runs per measurement at least.")
@click.option("--warmup-time", type=FiniteFloat(min=0), default=0.2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--acc-predictor", type=click.Path(exists=True, dir_okay=False),
              help="An accuracy predictor (OFA's acc_predictor.pth, or one from `ofa-coord "
                   "accuracy train`): measure its supernet's width and end by specialising "
                   "each device at two budgets.")
@click.option("--run-dir", type=click.Path(file_okay=False), default="runs", show_default=True,
              help="Parent folder of this run's folder.")
def demo(resolutions: tuple[int, ...], subnets: int, repeats: int, min_time: float,
         warmup_time: float, seed: int, acc_predictor: str | None, run_dir: str) -> None:
    """Run the whole flow locally: coordinator, two agents, LUT and random-subnet campaigns
    per device class, LUT export, specialisation (given --acc-predictor), summary."""
    started = time.perf_counter()
    accuracy = _accuracy_predictor(acc_predictor, resolutions)
    width = accuracy.width if accuracy else 1.0
    folder = Path(run_dir) / time.strftime("demo-%Y%m%d-%H%M%S")
    folder.mkdir(parents=True)
    store = Store(folder / "fleet.db")
    logs = contextlib.ExitStack()
    server, address = start_server(folder / "fleet.db", args=["-v"],
                                   log=logs.enter_context(open(folder / "coordinator.log", "ab")))
    agents = []
    try:
        for label, threads in DEVICES:
            token = folder / f"{label}.token"
            token.write_text(store.create_token(label))
            log = logs.enter_context(open(folder / f"agent-{label}.log", "ab"))
            agents.append(start_agent(address, token, folder / f"agent-{label}", [label],
                                      ["--threads", str(threads), "-v"], log=log))
        click.echo(f"coordinator on {address}, agents {', '.join(l for l, _ in DEVICES)}; "
                   f"run folder {folder}", err=True)
        deadline = time.monotonic() + 60
        while len(store.list_agents()) < len(DEVICES):
            if time.monotonic() > deadline:
                raise click.ClickException(f"agents did not register; see {folder}/agent-*.log")
            time.sleep(0.2)
        options = {label: BenchOptions(threads=threads, warmup_runs=5, warmup_min_s=warmup_time,
                                       min_runs=30, min_time_s=min_time)
                   for label, threads in DEVICES}
        summary = [_profile_device(store, folder, label, threads, resolutions, width, subnets,
                                   repeats, options[label], seed) for label, threads in DEVICES]
        try:
            chosen = [row for label, _ in DEVICES for row in _specialise_device(
                store, folder, label, accuracy, repeats, options[label], seed)] if accuracy else []
        except ValueError as exc:  # the search's refusals name what to change
            raise click.ClickException(f"specialisation: {exc}") from None
    finally:
        for process in [*agents, server]:  # agents first: they finish their job and report
            _stop(process)
        logs.close()
    wall = time.perf_counter() - started
    (folder / "summary.json").write_text(json.dumps(
        {"wall_s": wall, "width": width, "devices": summary, "specialised": chosen}, indent=2))
    _print_summary(summary, chosen, wall, folder)


def _accuracy_predictor(path: str | None, resolutions: tuple[int, ...]
                        ) -> AccuracyPredictor | None:
    """The predictor, checked against the demo's resolutions before anything is measured."""
    if not path:
        click.echo("no --acc-predictor given: the demo measures w1.0 and stops before "
                   "specialisation (see the README: `ofa-coord assets fetch`, then `make demo "
                   "DEMO_ARGS=--acc-predictor=PATH`)", err=True)
        return None
    try:
        accuracy = AccuracyPredictor.load(path)
        accuracy.predict([SubnetConfig.smallest(r=r, w=accuracy.width) for r in resolutions])
    except ValueError as exc:
        raise click.ClickException(f"--acc-predictor: {exc}") from None
    click.echo(f"accuracy predictor {path}: measuring the w{accuracy.width} supernet", err=True)
    return accuracy


def _profile_device(store: Store, folder: Path, label: str, threads: int,
                    resolutions: tuple[int, ...], width: float, subnets: int, repeats: int,
                    options: BenchOptions, seed: int) -> dict:
    common = dict(targets=(Target(label=label),), resolutions=resolutions, width=width,
                  repeats=repeats, seed=seed, options=options)
    lut_id, lut_s = _run(store, CampaignSpec(name=f"{label} LUT", workload="lut", **common))
    random_id, random_s = _run(store, CampaignSpec(name=f"{label} random subnets",
                                                   workload="random", count=subnets, **common))
    lut = collect_lut(store, label, lut_id)
    out = folder / f"lut-{label}"
    files = write_lut(lut, out, "ofa-yaml") + write_lut(lut, out, "json")
    lut_rows = [r for r in campaign_results(store, lut_id) if r["kind"] == "lut" and r["accepted"]]
    subnet_rows = [r for r in campaign_results(store, random_id)
                   if r["kind"] == "subnet" and r["accepted"]]
    table = LatencyTable.from_ofa_yaml(out)
    measured: dict[str, list[float]] = {}
    for row in subnet_rows:
        measured.setdefault(row["key"], []).append(row["median_ms"])
    ratios = [table.predict_ms(SubnetConfig.from_json(key)) / statistics.median(values)
              for key, values in measured.items()]
    return {"label": label, "threads": threads, "lut_campaign": lut_id,
            "random_campaign": random_id, "lut_entries": len(lut.entries),
            "lut_missing": len(lut.missing), "lut_drift_flagged": sum(e.drift_flag for e in lut.entries),
            "subnets": len(measured), "lut_wall_s": lut_s, "random_wall_s": random_s,
            "lut_repeat_spread": _repeat_spread(lut_rows),
            "subnet_repeat_spread": _repeat_spread(subnet_rows),
            "subnet_median_ms": statistics.median(statistics.median(v) for v in measured.values()),
            "lut_sum_over_measured": {"median": statistics.median(ratios), "min": min(ratios),
                                      "max": max(ratios)},
            "files": [str(p) for p in files]}


def _specialise_device(store: Store, folder: Path, label: str, accuracy: AccuracyPredictor,
                       repeats: int, options: BenchOptions, seed: int) -> list[dict]:
    """The best subnet at 30% and 60% of the way from the device's fastest to its slowest
    subnet (by its LUT), then those subnets measured on the device."""
    latency = lut_folder_predictor(folder / f"lut-{label}")
    resolutions = allowed_resolutions(latency, None)
    ends = latency.predict([make(r=r, w=latency.width) for r in resolutions
                            for make in (SubnetConfig.smallest, SubnetConfig.largest)])
    budgets = [round(float(ends.min() + share * (ends.max() - ends.min())), 2)
               for share in (0.3, 0.6)]
    out = folder / "specialised" / label
    rows = specialise(latency, accuracy, budgets, resolutions=resolutions, max_macs=None,
                      generations=100, seed=seed, folder=out,
                      source={"device": label, "lut": str(folder / f"lut-{label}")})
    chosen = out / "chosen.jsonl"
    chosen.write_text("".join(SubnetConfig.from_file(out / f"{b:g}ms" / "subnet.json").to_json()
                              + "\n" for b in budgets))
    campaign_id, _ = _run(store, CampaignSpec(
        name=f"{label} specialised subnets", targets=(Target(label=label),), workload="configs",
        configs_file=str(chosen), repeats=repeats, reference_every=0, seed=seed,
        options=options))
    measured = {m.config.id: m.median_ms for m in measured_subnets(store, label, [campaign_id])}
    return [{"label": label, **row, "measured_ms": measured.get(row["id"])} for row in rows]


def _print_summary(summary: list[dict], chosen: list[dict], wall: float, folder: Path) -> None:
    click.echo(f"\n{'device':<8} {'LUT entries':>11} {'subnets':>7} {'LUT time':>9} "
               f"{'subnet time':>11} {'repeat spread':>13} {'LUT sum/measured':>22}")
    for d in summary:
        ratio = d["lut_sum_over_measured"]
        spread = "-" if d["lut_repeat_spread"] is None else f"{d['lut_repeat_spread']:.1%}"
        click.echo(f"{d['label']:<8} {d['lut_entries']:>11} {d['subnets']:>7} "
                   f"{d['lut_wall_s']:>8.0f}s {d['random_wall_s']:>10.0f}s {spread:>13} "
                   f"{ratio['median']:>8.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})")
        if d["lut_missing"] or d["lut_drift_flagged"]:
            click.echo(f"  {d['lut_missing']} LUT entries missing, "
                       f"{d['lut_drift_flagged']} drift-flagged")
    if chosen:
        click.echo(f"\n{'device':<8} {'budget':>8} {'top-1':>7} {'LUT sum':>9} {'measured':>9} "
                   f"{'r':>4}")
        for row in chosen:
            measured = f"{row['measured_ms']:.2f}" if row["measured_ms"] else "-"
            click.echo(f"{row['label']:<8} {row['budget_ms']:>6.2f}ms {row['accuracy']:>7.4f} "
                       f"{row['latency_ms']:>7.2f}ms {measured:>7}ms {row['r']:>4}")
        click.echo("specialised: the most accurate subnet (predicted top-1) under each budget by "
                   "the device's LUT, then measured on it; files in specialised/.")
    click.echo(f"\nrepeat spread: median over models of (max - min) / median of the repeats' "
               f"medians.\nLUT sum/measured: OFA's LUT-sum estimate of each random subnet over "
               f"its measured median.\nWall time {wall:.0f} s. Everything is in {folder}: "
               f"fleet.db, lut-*/ (OFA yaml + JSON), specialised/, summary.json, logs.")
