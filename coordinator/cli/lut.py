"""`ofa-coord lut export` and `lut compare`: per-device latency lookup tables."""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

import click

from agent.output import JSON, Column, emit, format_option, render_table
from coordinator.cli.options import DB
from coordinator.output_files import StagedFolder
from coordinator.services.campaigns import campaign_status
from coordinator.services.lut_compare import DIMENSIONS, compare, read_tables
from coordinator.services.lut_export import FORMATS as LUT_FORMATS
from coordinator.services.lut_export import collect_lut, write_lut
from coordinator.services.plots import ratio_by_group
from coordinator.state import Store

MISSING_LISTED = 20  # missing entries named one per line; the rest are counted
MISSING_REASONS = {
    "pending": "still queued",
    "disturbed": "disturbed on every attempt",
    "failed": "failed",
    "cancelled": "cancelled",
    "excluded": "results excluded",
}


@click.group()
def lut() -> None:
    """Per-device latency lookup tables."""


@lut.command("export")
@DB
@click.option("--device", "label", required=True, help="The device label the LUT is for.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    help="Folder to write (default: luts/LABEL/TARGET, e.g. luts/pixel7/onnxruntime-cpu-int8-b1).",
)
@click.option(
    "--format", "fmt", type=click.Choice(LUT_FORMATS), default="ofa-yaml", show_default=True
)
@click.option(
    "--target",
    "target",
    help="The measurement target (e.g. onnxruntime-cpu-int8-b1), where the device's LUT "
    "campaigns measured several.",
)
@click.option("--campaign", "campaign_id", help="Only this campaign's results.")
@click.option("--allow-missing", is_flag=True, help="Exit 0 even when entries are missing.")
@click.option(
    "--include-disturbed",
    is_flag=True,
    help="Fill an entry that was disturbed on every attempt with its disturbed measurements "
    "(marked disturbed_only in JSON and CSV) instead of leaving it missing.",
)
def lut_export(
    db: str,
    label: str,
    out: str | None,
    fmt: str,
    target: str | None,
    campaign_id: str | None,
    allow_missing: bool,
    include_disturbed: bool,
) -> None:
    """Write the LUT of device LABEL on one measurement target. Missing entries are listed
    and make the exit code 1."""
    store = Store(db)
    if campaign_id:
        campaign_id = campaign_status(store, campaign_id)["id"]
    table = collect_lut(store, label, campaign_id, include_disturbed, target)
    target_name = table.provenance["target"]["name"]
    out = out or str(Path("luts") / label / target_name)
    if not table.entries:  # an empty export would look like a success
        raise ValueError(
            f"device: nothing exported for {label}: none of the {len(table.missing)} entries "
            f"{f'campaign {campaign_id}' if campaign_id else 'its LUT campaigns'} asked for "
            "has been measured yet"
        )
    with StagedFolder(out) as staging:  # every file appears whole or not at all
        names = [path.name for path in write_lut(table, staging, fmt)]
    paths = [Path(out) / name for name in names]
    flagged = sum(e.drift_flag for e in table.entries)
    remeasured = sum(e.disturbed > 0 for e in table.entries)
    tainted = sum(e.disturbed_only for e in table.entries)
    click.echo(
        f"{len(table.entries)} entries for {label} on {target_name} ({flagged} drift-flagged, "
        f"{remeasured} "
        "re-measured after a disturbance"
        + (f", {tainted} from disturbed measurements only" if tainted else "")
        + ") -> "
        + ", ".join(map(str, paths))
    )
    if table.missing:
        reasons = Counter(MISSING_REASONS[m.reason] for m in table.missing)
        click.echo(
            f"{len(table.missing)} entries missing ("
            + ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
            + "):",
            err=True,
        )
        for m in table.missing[:MISSING_LISTED]:
            click.echo(f"  r={m.r} {m.key} ({MISSING_REASONS[m.reason]})", err=True)
        if len(table.missing) > MISSING_LISTED:
            click.echo(f"  ... and {len(table.missing) - MISSING_LISTED} more", err=True)
        if not allow_missing:
            sys.exit(1)


def _number(value: float) -> str:
    return f"{value:.4f}"


SUMMARY = [
    Column("table", "table"),
    Column("shared", "shared", align="right"),
    Column("only base", "only_base", align="right"),
    Column("only table", "only_table", align="right"),
    Column("median", "median", _number, "right"),
    Column("p10", "p10", _number, "right"),
    Column("p90", "p90", _number, "right"),
]
GROUPS = [
    Column("by", "by"),
    Column("group", "group"),
    Column("entries", "entries", align="right"),
    Column("median", "median", _number, "right"),
    Column("p10", "p10", _number, "right"),
    Column("p90", "p90", _number, "right"),
    Column("vs median", "vs_median", _number, "right"),
]
EXTREMES = [
    Column("r", "r", align="right"),
    Column("key", "key"),
    Column("base ms", "base_ms", _number, "right"),
    Column("ms", "ms", _number, "right"),
    Column("ratio", "ratio", _number, "right"),
    Column("vs median", "vs_median", _number, "right"),
]


@lut.command("compare")
@click.argument("folders", nargs=-1, type=click.Path())
@click.option(
    "--top", default=10, show_default=True, type=click.IntRange(min=0), help="Extreme entries."
)
@click.option("--plot", type=click.Path(dir_okay=False), help="Write ratio by group as a PNG.")
@format_option()
def lut_compare(folders: tuple[str, ...], top: int, plot: str | None, fmt: str) -> None:
    """Compare the LUT FOLDERS (as `lut export` writes them) with the first, the base: per
    shared entry the latency ratio (table / base), its spread, the groups (stage, kernel,
    expand ratio, resolution) where the tables differ most, and the TOP entries farthest
    from the median ratio. JSON also lists every entry's ratio and what is not shared."""
    if plot and Path(plot).suffix.lower() != ".png":
        raise ValueError(f"plot: expected a .png file name, got {plot!r}")
    base, *others = read_tables(folders)
    comparisons = [compare(base, other, top) for other in others]
    if plot:
        ratio_by_group(comparisons, DIMENSIONS, Path(plot))
    emit(comparisons, fmt, SUMMARY)
    if fmt == JSON:
        return
    for c in comparisons:
        for r in c["resolutions_only_base"]:
            click.echo(f"r={r}: only in {c['base']}, not compared")
        for r in c["resolutions_only_table"]:
            click.echo(f"r={r}: only in {c['table']}, not compared")
        click.echo(f"\n{c['table']} / {c['base']}: where they differ most, by")
        click.echo(render_table(c["most_different"], GROUPS))
        click.echo(f"\n{c['table']} / {c['base']}: every group")
        click.echo(render_table(c["groups"], GROUPS))
        click.echo(
            f"\n{c['table']} / {c['base']}: the {len(c['extremes'])} entries farthest "
            "from the median ratio:"
        )
        click.echo(render_table(c["extremes"], EXTREMES))
    if plot:
        click.echo(f"\nplot -> {plot}")
