"""`ofa-coord results export`: a campaign's measurements."""

from __future__ import annotations

import sys

import click

from coordinator.cli.options import DB
from coordinator.cli.output import ProgressReport
from coordinator.output_files import Staged
from coordinator.services.campaigns import campaign_status
from coordinator.services.results_export import FORMATS as RESULT_FORMATS
from coordinator.services.results_export import campaign_results, write_results
from coordinator.state import Store


@click.group()
def results() -> None:
    """Export measurements."""


@results.command("export")
@DB
@click.option("--campaign", "campaign_id", required=True)
@click.option(
    "--format", "fmt", type=click.Choice(RESULT_FORMATS), default="csv", show_default=True
)
@click.option("--out", type=click.Path(dir_okay=False), help="File to write (default: stdout).")
def results_export(db: str, campaign_id: str, fmt: str, out: str | None) -> None:
    """Every result of a campaign: raw samples, statistics, device state (and in JSON lines,
    the per-node profiles of a --profile campaign)."""
    store = Store(db)
    records = campaign_results(store, campaign_status(store, campaign_id)["id"])
    with ProgressReport() as progress:
        if not out:
            write_results(records, sys.stdout, fmt, progress)
            return
        with Staged(out, newline="") as staged:  # the file appears whole or not at all
            count = write_results(records, staged.file, fmt, progress)
    click.echo(f"{count} results written to {out}", err=True)
