"""`ofa-coord lut export`: per-device latency lookup tables."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from coordinator.cli.options import DB
from coordinator.output_files import StagedFolder
from coordinator.services.campaigns import campaign_status
from coordinator.services.lut_export import FORMATS as LUT_FORMATS
from coordinator.services.lut_export import collect_lut, write_lut
from coordinator.state import Store


@click.group()
def lut() -> None:
    """Per-device latency lookup tables."""


@lut.command("export")
@DB
@click.option("--device", "label", required=True, help="The device label the LUT is for.")
@click.option("--out", type=click.Path(file_okay=False), required=True)
@click.option(
    "--format", "fmt", type=click.Choice(LUT_FORMATS), default="ofa-yaml", show_default=True
)
@click.option("--campaign", "campaign_id", help="Only this campaign's results.")
@click.option("--allow-missing", is_flag=True, help="Exit 0 even when entries are missing.")
def lut_export(
    db: str, label: str, out: str, fmt: str, campaign_id: str | None, allow_missing: bool
) -> None:
    """Write the LUT of device LABEL. Missing entries are listed and make the exit code 1."""
    store = Store(db)
    if campaign_id:
        campaign_id = campaign_status(store, campaign_id)["id"]
    table = collect_lut(store, label, campaign_id)
    with StagedFolder(out) as staging:  # every file appears whole or not at all
        names = [path.name for path in write_lut(table, staging, fmt)]
    paths = [Path(out) / name for name in names]
    flagged = sum(e.drift_flag for e in table.entries)
    click.echo(
        f"{len(table.entries)} entries for {label} ({flagged} drift-flagged) -> "
        + ", ".join(map(str, paths))
    )
    if table.missing:
        click.echo(f"{len(table.missing)} entries missing (never measured):", err=True)
        for r, key in table.missing[:20]:
            click.echo(f"  r={r} {key}", err=True)
        if not allow_missing:
            sys.exit(1)
