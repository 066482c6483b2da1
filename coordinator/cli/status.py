"""`ofa-coord status`: the fleet at a glance, once or redrawn until Ctrl-C."""

from __future__ import annotations

import itertools
import sys
import textwrap
import time

import click

from agent import strict_json
from agent.output import JSON, TABLE, Column, echo_json, emit, format_option
from coordinator.cli.options import DB, FiniteFloat
from coordinator.services.fleet_status import fleet_status
from coordinator.state import Store


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _cut(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "~"


def _job(job: dict) -> str:
    """Campaign, model (LUT keys run long: JSON has them whole) and seconds so far."""
    what = f"{job['campaign'] or '-'} {job['what']}"
    return f"{_cut(what, 28)} {job['elapsed_s']:.0f}s"


AGENT_COLUMNS = [
    Column("agent", "id"),
    Column("status", "status"),
    Column("labels", "labels", lambda labels: ",".join(labels) or "-"),
    Column("thr", "threads", align="right"),
    Column("runs", "capabilities", lambda runtimes: ",".join(runtimes) or "-"),
    Column("done", "jobs_done", align="right"),
    Column("measuring", "job", _job),
]
LABEL_COLUMNS = [
    Column("label", "label"),
    Column("queued", "queued", align="right"),
    Column("leased", "leased", align="right"),
    Column("jobs/min", "rate_per_s", lambda rate: f"{rate * 60:.1f}", align="right"),
    Column("ETA", "eta_s", _duration, align="right"),
    Column("agents online", "agents_online", align="right"),
]
CAMPAIGN_COLUMNS = [
    Column("campaign", "id"),
    Column("name", "name"),
    Column("state", "state"),
    Column("ended", "finished", align="right"),  # done, failed, disturbed or cancelled
    Column("total", "total", align="right"),
    Column("ETA", "eta_s", _duration, align="right"),
]


def _snapshot(store: Store) -> dict:
    return fleet_status(store, time.time())


def _tables(current: dict) -> None:
    """Agents, their last errors (below the table, where a whole line fits them), labels
    and campaigns."""
    click.echo("agents:")
    emit(current["agents"], TABLE, AGENT_COLUMNS, empty="no agents have registered")
    errors = [agent for agent in current["agents"] if agent["last_error"]]
    if errors:
        click.echo("\nlast errors:")
    for agent in errors:
        line = f"{agent['id']}: {agent['last_error']}"
        click.echo(textwrap.fill(line, 80, initial_indent="  ", subsequent_indent="    "))
    click.echo("\nlabels:")
    emit(current["labels"], TABLE, LABEL_COLUMNS, empty="no labels")
    click.echo("\ncampaigns running:")
    emit(current["campaigns"], TABLE, CAMPAIGN_COLUMNS, empty="none")


@click.command()
@DB
@click.option("--watch", is_flag=True, help="Redraw every --interval seconds until Ctrl-C.")
@click.option(
    "--interval",
    type=FiniteFloat(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds between redraws with --watch.",
)
@format_option()
def status(db: str, watch: bool, interval: float, fmt: str) -> None:
    """The fleet at a glance: each agent (status, labels, threads, the runtimes it has, the
    job it is measuring, jobs done, last error), each label's queue, rate and ETA, and the
    campaigns running. With --watch the view is redrawn until Ctrl-C (on a terminal in
    place, elsewhere after a separator line); with --format json, one object per line."""
    store = Store(db)
    if not watch:
        current = _snapshot(store)
        if fmt == JSON:
            echo_json(current)
        else:
            _tables(current)
        return
    terminal = sys.stdout.isatty()
    try:
        for drawn in itertools.count():
            current = _snapshot(store)
            if fmt == JSON:
                click.echo(strict_json.dumps(current))
            else:
                if terminal:
                    click.clear()
                elif drawn:
                    click.echo("=" * 80)
                click.echo(f"fleet at {time.strftime('%H:%M:%S')} (Ctrl-C to stop)\n")
                _tables(current)
            time.sleep(interval)
    except KeyboardInterrupt:
        pass  # the way to stop watching, not an error
