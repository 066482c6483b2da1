"""`ofa-coord measurements import|list`: end-to-end latencies measured outside the fleet."""

from __future__ import annotations

import json
import time

import click

from agent.output import Column, emit, format_option
from coordinator.cli.options import DB, NEW_DB
from coordinator.services.imports import import_measurements
from coordinator.state import Store


@click.group()
def measurements() -> None:
    """Import end-to-end latencies measured elsewhere as a device's data."""


@measurements.command("import")
@NEW_DB
@click.option("--device", "label", required=True, help="The device label the measurements are of.")
@click.option(
    "--target",
    required=True,
    help="The measurement target they were taken on, by name: "
    "RUNTIME-PROVIDER-PRECISION-bBATCH[-tTHREADS], e.g. onnxruntime-cpu-int8-b1.",
)
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help='JSONL lines {"config": {...}, "latency_ms": x, ...} or CSV with config (JSON) and '
    "latency_ms columns; other keys and columns are kept as metadata.",
)
def import_(db: str, label: str, target: str, path: str) -> None:
    """Check every line of the file, then store them all as device LABEL's end-to-end
    measurements on the target (a bad line is refused with its number, and nothing is
    imported). `predictor train|eval` and `specialize --device` then use them as they use
    the fleet's."""
    summary = import_measurements(Store(db), label, target, path)
    click.echo(
        f"imported {summary.lines} measurements of {summary.subnets} subnets for {label} on "
        f"{summary.target} as {summary.import_id}"
    )


@measurements.command("list")
@DB
@format_option()
def list_(db: str, fmt: str) -> None:
    """Every import: its device, target, file and line count."""
    rows = [
        {
            **row,
            "target": json.loads(row["target"])["name"],
            "imported": time.strftime("%Y-%m-%d %H:%M", time.gmtime(row["imported_at"])),
        }
        for row in Store(db).list_imports()
    ]
    emit(
        rows,
        fmt,
        [
            Column("id", "id"),
            Column("device", "label"),
            Column("target", "target"),
            Column("lines", "lines", align="right"),
            Column("imported (UTC)", "imported"),
            Column("file", "file"),
        ],
    )
