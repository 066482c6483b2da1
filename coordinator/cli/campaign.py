"""`ofa-coord campaign create|start|status|wait|cancel|list`: profiling campaigns."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import click

from agent.measure import SETTING_FLAGS
from agent.output import TABLE, Column, echo_json, emit, format_option, render_table
from coordinator.cli.options import (
    DB,
    RESOLUTIONS,
    FiniteFloat,
    batch_option,
    precision_option,
    supernet_options,
)
from coordinator.cli.output import ProgressReport
from coordinator.services.campaigns import (
    WORKLOADS,
    CampaignSpec,
    campaign_status,
    cancel_campaign,
    create_campaign,
    list_campaigns,
    render_progress,
    start_campaign,
    unserved_targets,
)
from coordinator.services.jobs import BenchOptions
from coordinator.services.waiting import CampaignTimeout, Progress, follow_campaign
from coordinator.state import BlobStore, Devices, Store, redacted

Command = TypeVar("Command", bound=Callable[..., Any])


def bench_setting_options(command: Command) -> Command:
    """One option per measurement setting (agent/measure.py's table); 0 or unset leaves it
    to the agent. The values are checked by BenchOptions.from_dict."""
    defaults = BenchOptions()
    for setting in reversed(SETTING_FLAGS):
        default = getattr(defaults, setting.field)
        command = click.option(
            setting.flag,
            setting.field,
            type=click.Choice(setting.choices) if setting.choices else setting.kind,
            default=default,
            show_default=bool(setting.choices),
            help=setting.help
            + (
                ""
                if setting.choices
                else f" {'Unset' if default == '' else '0'}: {setting.job_default}."
            ),
        )(command)
    return command


@click.group()
def campaign() -> None:
    """Create, start, watch and cancel profiling campaigns."""


@campaign.command("create")
@DB
@click.option("--name", required=True, help="A name for the campaign, shown by `campaign list`.")
@click.option("--label", "labels", multiple=True, help="Device label to measure on (repeatable).")
@click.option("--agent", "agents", multiple=True, help="One agent id to measure on (repeatable).")
@click.option(
    "--workload",
    type=click.Choice(WORKLOADS),
    required=True,
    help="lut: every LUT entry of the space; random: --count sampled subnets; "
    "configs: subnets from --configs; lut+random: both in one shuffled queue.",
)
@click.option("--resolutions", type=RESOLUTIONS, default="224", show_default=True)
@supernet_options
@click.option("--count", type=int, default=0, help="Subnets to sample (random workload).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--configs",
    "configs_file",
    type=click.Path(exists=True, dir_okay=False),
    help="JSON, JSONL or OFA net.config file (configs workload).",
)
@click.option(
    "--repeats",
    type=int,
    default=2,
    show_default=True,
    help="Times each model is measured, each in its own lease window.",
)
@click.option(
    "--reference-every",
    type=int,
    default=25,
    show_default=True,
    help="Interleave the drift-reference model every N jobs (0: never).",
)
@precision_option
@batch_option
@bench_setting_options
@click.option(
    "--max-attempts",
    type=int,
    default=3,
    show_default=True,
    help="Leases a job may have before it fails (an expired or failed one counts).",
)
@click.option(
    "--max-disturbed",
    type=int,
    default=CampaignSpec.max_disturbed,
    show_default=True,
    help="Disturbed measurements a job may have (each measured again after a cooldown) "
    "before it ends 'disturbed'.",
)
@click.option(
    "--profile",
    is_flag=True,
    help="Also record each subnet's per-node kernel times (onnxruntime's profiler, in a "
    "session after the timed runs): `results export --format jsonl` includes them, "
    "`profile show` reads them.",
)
@click.option("--start", "start_now", is_flag=True, help="Start it right away.")
def create(
    db: str,
    name: str,
    labels: tuple[str, ...],
    agents: tuple[str, ...],
    workload: str,
    resolutions: tuple[int, ...],
    family: str,
    width: float,
    count: int,
    seed: int,
    configs_file: str | None,
    repeats: int,
    reference_every: int,
    max_attempts: int,
    max_disturbed: int,
    profile: bool,
    precision: str,
    batch: int,
    start_now: bool,
    **settings: Any,
) -> None:
    """Create a campaign (validates it and builds its models for its target: --runtime,
    --provider, --precision, --batch, --threads; nothing is queued unless --start)."""
    store = Store(db)
    options = BenchOptions.from_dict(settings)
    spec = CampaignSpec(
        name=name,
        targets=tuple([Devices(label=x) for x in labels] + [Devices(agent=x) for x in agents]),
        workload=workload,
        resolutions=resolutions,
        family=family,
        width=width,
        count=count,
        seed=seed,
        configs_file=configs_file,
        repeats=repeats,
        reference_every=reference_every,
        max_attempts=max_attempts,
        max_disturbed=max_disturbed,
        options=options,
        profile=profile,
        precision=precision,
        batch=batch,
    )
    with ProgressReport() as progress:
        campaign_id = create_campaign(store, BlobStore(store), spec, progress, start_now)
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
@format_option()
def status(db: str, campaign_id: str, fmt: str) -> None:
    """Progress of a campaign: bar, rate, ETA, per-target counts and failures."""
    current = campaign_status(Store(db), campaign_id)
    if fmt != TABLE:
        echo_json(current)
        return
    click.echo(render_progress(current, per_target=False))  # the table has them per target
    if current["targets"]:
        click.echo(render_table(_target_counts(current), TARGET_COLUMNS))
    for error in current["errors"]:
        click.echo(f"  failed: {error}")
    _say_if_starting(db, current)


JOB_STATES = ("queued", "leased", "done", "failed", "disturbed", "cancelled")
TARGET_COLUMNS = [Column("target", "target")] + [
    Column(state, state, align="right") for state in (*JOB_STATES, "total")
]


def _target_counts(current: dict) -> list[dict]:
    """A row per target: its jobs in each state."""
    return [
        {
            "target": target,
            **{s: counts.get(s, 0) for s in JOB_STATES},
            "total": sum(counts.values()),
        }
        for target, counts in sorted(current["targets"].items())
    ]


def _say_if_starting(db: str, current: dict) -> None:
    """A campaign left `starting` by an interrupted start waits for someone to resume it."""
    if current["state"] == "starting":
        click.echo(
            f"campaign {current['id']} is still being started; if that start was "
            f"interrupted, resume it: ofa-coord campaign start --db {redacted(db)} "
            f"{current['id']}",
            err=True,
        )


@campaign.command("wait")
@DB
@click.argument("campaign_id")
@click.option(
    "--timeout",
    type=FiniteFloat(min=0),
    default=0.0,
    help="Give up after this many seconds (0: never).",
)
@click.option("--interval", type=FiniteFloat(min=0.1, max=3600), default=1.0, show_default=True)
def wait(db: str, campaign_id: str, timeout: float, interval: float) -> None:
    """Show live progress until the campaign finishes, and say when no online agent serves a
    target. Exit 0 when every job is done, 2 when some failed or were cancelled, 1 on
    timeout, 130 on Ctrl-C (the campaign keeps running)."""
    store = Store(db)
    current = campaign_status(store, campaign_id)
    if current["state"] == "created":
        raise ValueError(
            f"campaign {current['id']}: has not been started "
            f"(ofa-coord campaign start {current['id']})"
        )
    _say_if_starting(db, current)
    try:
        code = _show_until_finished(
            follow_campaign(store, current["id"], interval, timeout), timeout
        )
    except KeyboardInterrupt:
        click.echo(
            f"\ncampaign {current['id']} keeps running; to stop it: ofa-coord campaign "
            f"cancel --db {redacted(db)} {current['id']}",
            err=True,
        )
        code = 130
    sys.exit(code)


def _show_until_finished(looks: Iterator[Progress], timeout: float) -> int:
    """Render each look at the campaign, live on a terminal and every 10 s otherwise, with the
    targets no online agent serves; the exit code: 0 all done, 2 some failed or cancelled, 1
    timed out."""
    live = sys.stdout.isatty()
    last_line = -float("inf")
    said: list[str] = []
    progress: Progress | None = None
    try:
        for progress in looks:
            now = time.monotonic()
            due = progress.finished or now - last_line >= 10
            if progress.unserved and (due or progress.unserved != said):  # again every line
                click.echo(
                    ("\n" if live else "")
                    + "\n".join(f"waiting: {line}" for line in progress.unserved),
                    err=True,
                )
            said = progress.unserved
            if live:
                click.echo("\r" + render_progress(progress.status), nl=False)
            elif due:
                click.echo(render_progress(progress.status))
            if due:
                last_line = now
    except CampaignTimeout:
        click.echo(
            ("\n" if live else "") + f"timed out after {timeout:g} s; the campaign keeps running",
            err=True,
        )
        return 1
    assert progress is not None  # follow_campaign yields at least once
    if live:
        click.echo()
    for error in progress.status["errors"]:
        click.echo(f"  failed: {error}")
    return 0 if progress.all_done else 2


@campaign.command("cancel")
@DB
@click.argument("campaign_id")
def cancel(db: str, campaign_id: str) -> None:
    """Stop handing out a campaign's jobs (results already in are kept)."""
    click.echo(f"{cancel_campaign(Store(db), campaign_id)} jobs cancelled")


@campaign.command("list")
@DB
@format_option(csv=True)
def list_(db: str, fmt: str) -> None:
    """All campaigns with their state and progress (JSON: each as `campaign status` has it)."""
    columns = [
        Column("id", "id"),
        Column("name", "name"),
        Column("state", "state"),
        Column("ended", "finished", align="right"),  # done, failed, disturbed or cancelled
        Column("total", "total", align="right"),
        Column("failed", "failed", align="right"),
        Column("disturbed", "disturbed", align="right"),
        Column("targets", "targets", lambda targets: ", ".join(sorted(targets))),
    ]
    emit(list_campaigns(Store(db)), fmt, columns, empty="no campaigns")
