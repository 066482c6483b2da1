"""`ofa-coord profile show`: a subnet's per-node profile by OFA layer and by operator type."""

from __future__ import annotations

from pathlib import Path

import click

from agent.output import JSON, TABLE, Column, echo_json, emit, format_option
from agent.profile import by_op_type
from coordinator.services.profiles import profile_by_layer, read_profile
from ofa import jsonfile
from ofa.config import load_configs
from ofa.lut import LatencyTable


def _ms(value: float) -> str:
    return f"{value:.3f}"


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


LAYER_COLUMNS = [
    Column("layer", "layer"),
    Column("LUT key", "lut_key", lambda key: key or "-"),
    Column("profiled ms", "profiled_ms", _ms, align="right"),
    Column("%", "share", _percent, align="right"),
    Column("LUT ms", "lut_ms", _ms, align="right"),
]
OP_COLUMNS = [
    Column("op type", "op_type"),
    Column("nodes", "nodes", align="right"),
    Column("profiled ms", "ms", _ms, align="right"),
    Column("%", "share", _percent, align="right"),
]


@click.group()
def profile() -> None:
    """Per-layer and per-operator profiles of measured subnets."""


@profile.command()
@click.argument("profile_file", metavar="PROFILE", type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--config",
    "config_file",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="The profiled subnet's config (JSON, or the net.config `subnet export` writes).",
)
@click.option(
    "--lut",
    type=click.Path(exists=True, file_okay=False),
    help="A folder of {r}_lookup_table.yaml (`lut export`): each layer's LUT figure beside it.",
)
@format_option()
def show(profile_file: str, config_file: str, lut: str | None, fmt: str) -> None:
    """Where a subnet's time goes: PROFILE (`ofa-agent bench MODEL --profile --format json`)
    by layer, mapped to OFA's blocks and LUT keys (with --lut, each layer's LUT figure beside
    it), and by operator type. Profiled times are onnxruntime's kernel times, which leave
    out the time between kernels, so they sum to a little less than the latency."""
    record = jsonfile.parse(jsonfile.read_text(Path(profile_file)), profile_file)
    nodes = read_profile(record.get("profile") if isinstance(record, dict) else None)
    configs = load_configs(config_file)
    if len(configs) != 1:
        raise click.UsageError(f"--config: expected one subnet, {config_file} has {len(configs)}")
    table = LatencyTable.from_ofa_yaml(lut) if lut else None
    layers = profile_by_layer(nodes, configs[0], table)
    ops = [{**row, "ms": row["mean_us"] / 1000} for row in by_op_type(nodes)]
    if fmt == JSON:
        echo_json({"subnet": configs[0].id, "layers": layers, "op_types": ops})
        return
    click.echo(f"subnet {configs[0].id} by layer:")
    emit(layers, TABLE, LAYER_COLUMNS)
    click.echo("\nby operator type:")
    emit(ops, TABLE, OP_COLUMNS)
