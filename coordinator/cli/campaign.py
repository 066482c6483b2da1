"""Commands over campaigns and their outputs: campaign create|start|status|wait|cancel|list,
results export, lut export."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from coordinator.state import BlobStore
from coordinator.services.campaigns import (WORKLOADS, CampaignSpec, Target, campaign_status,
                                   cancel_campaign, create_campaign, list_campaigns,
                                   render_progress, start_campaign, unserved_targets)
from coordinator.cli.fleet import DB
from coordinator.services.jobs import BenchOptions
from coordinator.services.lut_export import FORMATS as LUT_FORMATS
from coordinator.services.lut_export import collect_lut, write_lut
from coordinator.cli.options import RESOLUTIONS, WIDTH, FiniteFloat
from coordinator.output_files import Staged, StagedFolder
from coordinator.services.results_export import FORMATS as RESULT_FORMATS
from coordinator.services.results_export import campaign_results, write_results
from coordinator.state import Store


def _progress_bar(label: str):
    """A progress callback (done, total) drawing a bar on stderr once the total is known."""
    bar = None

    def update(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = click.progressbar(length=total, label=label, file=sys.stderr)
            bar.__enter__()
        bar.update(done - bar.pos)
        if done == total:
            bar.__exit__(None, None, None)
    return update


@click.group()
def campaign() -> None:
    """Create, start, watch and cancel profiling campaigns."""


@campaign.command("create")
@DB
@click.option("--name", required=True)
@click.option("--label", "labels", multiple=True, help="Device label to measure on (repeatable).")
@click.option("--agent", "agents", multiple=True, help="One agent id to measure on (repeatable).")
@click.option("--workload", type=click.Choice(WORKLOADS), required=True,
              help="lut: every LUT entry of the space; random: --count sampled subnets; "
                   "configs: subnets from --configs; lut+random: both in one shuffled queue.")
@click.option("--resolutions", type=RESOLUTIONS, default="224", show_default=True)
@click.option("--width", type=WIDTH, default="1.0", show_default=True)
@click.option("--count", type=int, default=0, help="Subnets to sample (random workload).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--configs", "configs_file", type=click.Path(exists=True, dir_okay=False),
              help="JSON, JSONL or OFA net.config file (configs workload).")
@click.option("--repeats", type=int, default=2, show_default=True,
              help="Times each model is measured, each in its own lease window.")
@click.option("--reference-every", type=int, default=25, show_default=True,
              help="Interleave the drift-reference model every N jobs (0: never).")
@click.option("--threads", type=int, default=0, help="0: each agent's own --threads.")
@click.option("--warmup-runs", type=int, default=0, help="0: the agent's default (10).")
@click.option("--warmup-min-time", type=float, default=0.0, help="0: the agent's default (0.5 s).")
@click.option("--min-runs", type=int, default=0, help="0: the agent's default (50).")
@click.option("--min-time", type=float, default=0.0, help="0: the agent's default (1 s).")
@click.option("--max-time", type=float, default=0.0, help="0: the agent's default (30 s).")
@click.option("--precision", type=float, default=0.0, help="0: the agent's default (0.02).")
@click.option("--max-attempts", type=int, default=3, show_default=True)
@click.option("--start", "start_now", is_flag=True, help="Start it right away.")
def create(db, name, labels, agents, workload, resolutions, width, count, seed, configs_file,
           repeats, reference_every, threads, warmup_runs, warmup_min_time, min_runs, min_time,
           max_time, precision, max_attempts, start_now) -> None:
    """Create a campaign (validates it and builds its ONNX models; nothing is queued unless
    --start)."""
    store = Store(db)
    options = BenchOptions.from_dict(dict(
        threads=threads, warmup_runs=warmup_runs, warmup_min_s=warmup_min_time,
        min_runs=min_runs, min_time_s=min_time, max_time_s=max_time, target_precision=precision))
    spec = CampaignSpec(name=name, targets=tuple([Target(label=x) for x in labels] +
                                                 [Target(agent=x) for x in agents]),
                        workload=workload, resolutions=resolutions, width=float(width),
                        count=count, seed=seed, configs_file=configs_file, repeats=repeats,
                        reference_every=reference_every, max_attempts=max_attempts,
                        options=options)
    campaign_id = create_campaign(store, BlobStore(store), spec, start=start_now,
                                  progress=_progress_bar("building models"))
    click.echo(f"campaign {campaign_id} ({name}) created")
    if start_now:
        _started(store, campaign_id)


def _started(store: Store, campaign_id: str) -> None:
    current = campaign_status(store, campaign_id)
    click.echo(f"{current['total']} jobs queued")
    _warn_unserved(store, current)


def _warn_unserved(store: Store, current: dict) -> None:
    for line in unserved_targets(store, current):
        click.echo(f"warning: {line}; its jobs wait until one connects", err=True)


@campaign.command("start")
@DB
@click.argument("campaign_id")
def start(db: str, campaign_id: str) -> None:
    """Queue a created campaign's jobs."""
    store = Store(db)
    start_campaign(store, campaign_id)
    _started(store, campaign_id)


@campaign.command("status")
@DB
@click.argument("campaign_id")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def status(db: str, campaign_id: str, fmt: str) -> None:
    """Progress of a campaign: bar, rate, ETA, per-device counts and failures."""
    current = campaign_status(Store(db), campaign_id)
    if fmt == "json":
        click.echo(json.dumps(current, indent=2))
        return
    click.echo(render_progress(current))
    for error in current["errors"]:
        click.echo(f"  failed: {error}")
    _say_if_starting(db, current)


def _say_if_starting(db: str, current: dict) -> None:
    """A campaign left `starting` by an interrupted start waits for someone to resume it."""
    if current["state"] == "starting":
        click.echo(f"campaign {current['id']} is still being started; if that start was "
                   f"interrupted, resume it: ofa-coord campaign start --db {db} "
                   f"{current['id']}", err=True)


@campaign.command("wait")
@DB
@click.argument("campaign_id")
@click.option("--timeout", type=FiniteFloat(min=0), default=0.0,
              help="Give up after this many seconds (0: never).")
@click.option("--interval", type=FiniteFloat(min=0.1, max=3600), default=1.0,
              show_default=True)
def wait(db: str, campaign_id: str, timeout: float, interval: float) -> None:
    """Show live progress until the campaign finishes, and say when no online agent serves a
    target. Exit 0 when every job is done, 2 when some failed or were cancelled, 1 on
    timeout, 130 on Ctrl-C (the campaign keeps running)."""
    store = Store(db)
    current = campaign_status(store, campaign_id)
    if current["state"] == "created":
        raise click.ClickException(f"campaign {current['id']}: has not been started "
                                   f"(ofa-coord campaign start {current['id']})")
    _say_if_starting(db, current)
    try:
        _watch(store, current["id"], timeout, interval)
    except KeyboardInterrupt:
        click.echo(f"\ncampaign {current['id']} keeps running; to stop it: ofa-coord campaign "
                   f"cancel --db {db} {current['id']}", err=True)
        sys.exit(130)


def _watch(store: Store, campaign_id: str, timeout: float, interval: float) -> None:
    start_time = time.monotonic()
    live = sys.stdout.isatty()
    last_print, said = -float("inf"), []
    while True:
        current = campaign_status(store, campaign_id)
        finished = current["state"] in ("done", "cancelled") or (
            current["state"] == "running" and current["finished"] == current["total"])
        now = time.monotonic()
        due = finished or now - last_print >= 10  # a line every 10 s when not a terminal
        unserved = [] if finished else unserved_targets(store, current)
        if unserved and (due or unserved != said):  # said again with every progress line
            click.echo(("\n" if live else "") + "\n".join(f"waiting: {line}" for line in unserved),
                       err=True)
        said = unserved
        if live:
            click.echo("\r" + render_progress(current), nl=False)
        elif due:
            click.echo(render_progress(current))
        if due:
            last_print = now
        if finished:
            if live:
                click.echo()
            for error in current["errors"]:
                click.echo(f"  failed: {error}")
            done = sum(c.get("done", 0) for c in current["targets"].values())
            sys.exit(0 if done == current["total"] else 2)
        if timeout and now - start_time > timeout:
            click.echo(("\n" if live else "") + f"timed out after {timeout:g} s; the campaign "
                       "keeps running", err=True)
            sys.exit(1)
        time.sleep(interval)


@campaign.command("cancel")
@DB
@click.argument("campaign_id")
def cancel(db: str, campaign_id: str) -> None:
    """Stop handing out a campaign's jobs (results already in are kept)."""
    click.echo(f"{cancel_campaign(Store(db), campaign_id)} jobs cancelled")


@campaign.command("list")
@DB
def list_(db: str) -> None:
    """All campaigns with their state and progress."""
    campaigns = list_campaigns(Store(db))
    if not campaigns:
        click.echo("no campaigns")
        return
    click.echo(f"{'id':<10} {'name':<24} {'state':<10} {'done':>11} {'failed':>6}  targets")
    for c in campaigns:
        click.echo(f"{c['id']:<10} {c['name'][:24]:<24} {c['state']:<10} "
                   f"{c['finished']:>5}/{c['total']:<5} {c['failed']:>6}  "
                   f"{', '.join(sorted(c['targets']))}")


@click.group()
def results() -> None:
    """Export measurements."""


@results.command("export")
@DB
@click.option("--campaign", "campaign_id", required=True)
@click.option("--format", "fmt", type=click.Choice(RESULT_FORMATS), default="csv", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
def results_export(db: str, campaign_id: str, fmt: str, out: str | None) -> None:
    """Every result of a campaign: raw samples, statistics, device state."""
    store = Store(db)
    records = campaign_results(store, campaign_status(store, campaign_id)["id"])
    if out:
        with Staged(out, newline="") as staged:  # the file appears whole or not at all
            count = write_results(records, staged.file, fmt)
        click.echo(f"{count} results written to {out}", err=True)
    else:
        write_results(records, sys.stdout, fmt)


@click.group()
def lut() -> None:
    """Per-device latency lookup tables."""


@lut.command("export")
@DB
@click.option("--device", "label", required=True, help="The device label the LUT is for.")
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option("--format", "fmt", type=click.Choice(LUT_FORMATS), default="ofa-yaml",
              show_default=True)
@click.option("--campaign", "campaign_id", help="Only this campaign's results.")
@click.option("--allow-missing", is_flag=True, help="Exit 0 even when entries are missing.")
def lut_export(db: str, label: str, out: str, fmt: str, campaign_id: str | None,
               allow_missing: bool) -> None:
    """Write the LUT of device LABEL. Missing entries are listed and make the exit code 1."""
    store = Store(db)
    if campaign_id:
        campaign_id = campaign_status(store, campaign_id)["id"]
    table = collect_lut(store, label, campaign_id)
    with StagedFolder(out) as staging:  # every file appears whole or not at all
        names = [path.name for path in write_lut(table, staging, fmt)]
    paths = [Path(out) / name for name in names]
    flagged = sum(e.drift_flag for e in table.entries)
    click.echo(f"{len(table.entries)} entries for {label} ({flagged} drift-flagged) -> "
               + ", ".join(map(str, paths)))
    if table.missing:
        click.echo(f"{len(table.missing)} entries missing (never measured):", err=True)
        for r, key in table.missing[:20]:
            click.echo(f"  r={r} {key}", err=True)
        if not allow_missing:
            sys.exit(1)
