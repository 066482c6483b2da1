"""`ofa-coord profile show`: a subnet's per-node profile by OFA layer and by operator type."""

from __future__ import annotations

import json
from collections.abc import Iterator

import click

from agent.output import JSON, TABLE, Column, echo_json, emit, format_option
from agent.profile import NodeTime, by_op_type
from coordinator.services.profiles import profile_by_layer, profile_from_results, read_profile
from coordinator.state import CAMPAIGN_RESULT_KEYS
from ofa import jsonfile
from ofa.config import SubnetConfig, load_configs
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
    help="The profiled subnet's config (JSON, or the net.config `subnet export` writes); "
    "needed for a profile of `ofa-agent bench`, whose JSON does not name the subnet.",
)
@click.option("--subnet", help="Of campaign results: the subnet id, where they profile several.")
@click.option(
    "--target", help="Of campaign results: the target (e.g. label:pixel7), where they hold several."
)
@click.option(
    "--lut",
    type=click.Path(exists=True, file_okay=False),
    help="A folder of {r}_lookup_table.yaml (`lut export`): each layer's LUT figure beside it.",
)
@format_option()
def show(
    profile_file: str,
    config_file: str | None,
    subnet: str | None,
    target: str | None,
    lut: str | None,
    fmt: str,
) -> None:
    """Where a subnet's time goes, by layer (mapped to OFA's blocks and LUT keys; with --lut,
    each layer's LUT figure beside it) and by operator type. PROFILE is the JSON of
    `ofa-agent bench MODEL --profile --format json`, or the results of a campaign created
    with --profile (`results export --format jsonl`), whose repeats are averaged. Profiled
    times are onnxruntime's kernel times, which leave out the time between kernels, so they
    sum to a little less than the latency."""
    config, nodes = _read(profile_file, config_file, subnet, target)
    table = LatencyTable.from_ofa_yaml(lut) if lut else None
    layers = profile_by_layer(nodes, config, table)
    ops = [{**row, "ms": row["mean_us"] / 1000} for row in by_op_type(nodes)]
    if fmt == JSON:
        echo_json({"subnet": config.id, "layers": layers, "op_types": ops})
        return
    click.echo(f"subnet {config.id} by layer:")
    emit(layers, TABLE, LAYER_COLUMNS)
    click.echo("\nby operator type:")
    emit(ops, TABLE, OP_COLUMNS)


def _read(
    path: str, config_file: str | None, subnet: str | None, target: str | None
) -> tuple[SubnetConfig, list[NodeTime]]:
    """The subnet and its nodes from either kind of PROFILE file (told apart by its first
    line: a results export's is a whole record, with its `kind`)."""
    first = next((line for _, line in _lines(path)), "")
    if first.startswith(CAMPAIGN_RESULT_KEYS[0] + ","):
        raise ValueError(f"{path}: a CSV export holds no profiles; export with --format jsonl")
    try:
        record = json.loads(first)
    except ValueError:  # the first line of a multi-line JSON document, or not JSON
        record = None
    if isinstance(record, dict) and "kind" in record:
        if config_file is not None:
            raise click.UsageError("--config: campaign results name their subnets; use --subnet")
        records = ((where, jsonfile.parse(line, where)) for where, line in _lines(path))
        return profile_from_results(records, subnet, target)
    if subnet or target:
        raise click.UsageError("--subnet, --target: they pick among campaign results")
    if config_file is None:
        raise click.UsageError("--config: a profile of `ofa-agent bench` needs the subnet")
    configs = load_configs(config_file)
    if len(configs) != 1:
        raise click.UsageError(f"--config: expected one subnet, {config_file} has {len(configs)}")
    bench = jsonfile.read(path)
    return configs[0], read_profile(bench.get("profile") if isinstance(bench, dict) else None)


def _lines(path: str) -> Iterator[tuple[str, str]]:
    """(`file:line`, text) of each non-blank line, read one at a time (an export with its
    samples can be hundreds of MB)."""
    try:
        with open(path, encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield f"{path}:{number}", line
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
