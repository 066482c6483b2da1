"""`ofa-coord predictor train|eval|predict`: per-device latency predictors."""

from __future__ import annotations

from pathlib import Path

import click

from agent.output import TABLE, Column, emit, format_option, render_table
from coordinator.cli.options import DB
from coordinator.cli.output import ProgressReport
from coordinator.services.predictors import (
    device_predictors,
    evaluate,
    held_out_subnets,
    noise_floor,
    noise_warnings,
    of_supernet,
    plot_predictors,
    predictor_file,
    scoring_target,
    train_predictor,
    trained_target,
)
from coordinator.state import Store
from ofa.config import load_configs
from ofa.latency_model import KINDS, SOURCE_KINDS, load_predictor


@click.group()
def predictor() -> None:
    """Train, evaluate and query per-device latency predictors."""


NOISE_FLOOR = "noise floor"
NO_FLOOR = "needs two measurements of each held-out subnet"
NO_SUBNETS = "no held-out subnet of its supernet was measured"
METRIC_COLUMNS = [
    Column("predictor", "predictor"),
    Column("n", "n", "{:.0f}".format, "right"),
    Column("RMSE ms", "rmse_ms", "{:.3f}".format, "right"),
    Column("RMSE %", "rmse_pct", "{:.2f}".format, "right"),
    Column("MAPE %", "mape_pct", "{:.2f}".format, "right"),
    Column("<=5%", "within_5pct", "{:.1%}".format, "right"),
    Column("<=10%", "within_10pct", "{:.1%}".format, "right"),
    Column("tau", "kendall_tau", "{:.3f}".format, "right"),
    Column("rho", "spearman_rho", "{:.3f}".format, "right"),
]


def _metric_records(rows: dict[str, dict | None]) -> list[dict]:
    """A record per predictor (and the noise floor), named in its `predictor` field; one
    that cannot be scored says why in its `note`."""
    return [
        {"predictor": name, **metrics}
        if metrics
        else {"predictor": name, "note": NO_FLOOR if name == NOISE_FLOOR else NO_SUBNETS}
        for name, metrics in rows.items()
    ]


def _say_if_no_floor(records: list[dict]) -> None:
    for record in records:
        if "note" in record:
            click.echo(f"{record['predictor']}: {record['note']}")


def _warn(rows: dict[str, dict | None]) -> None:
    """Figures that cannot be taken at face value, on stderr (stdout may be JSON)."""
    for line in noise_warnings(rows, NOISE_FLOOR):
        click.echo(line, err=True)


# Which of the device's predictors: those of one measurement target.
TARGET = click.option(
    "--target",
    help="The measurement target of the predictors (e.g. onnxruntime-cpu-fp32-b8), where "
    "the device has predictors on several.",
)


@predictor.command()
@DB
@click.option("--device", "label", required=True)
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="lut-ridge",
    show_default=True,
    help="lut, lut-corrected, lut-ridge: from the device's LUT (the last two also learn from "
    "its subnets); structure: from its measured subnets alone, no LUT; transfer: another "
    "device's predictor adapted.",
)
@click.option(
    "--campaign",
    "campaigns",
    multiple=True,
    help="Subnet campaigns to learn from (default: all on this device).",
)
@click.option("--lut-campaign", help="The LUT campaign to use (default: all on this device).")
@click.option("--source-device", help="transfer: the device whose predictor is adapted.")
@click.option(
    "--source-kind", type=click.Choice(SOURCE_KINDS), default="lut-ridge", show_default=True
)
@click.option(
    "--source-target",
    help="transfer: the measurement target of the source's predictor, where it has several.",
)
@click.option(
    "--k",
    "k",
    type=click.IntRange(min=1),
    help="transfer: use only K training subnets of this device (seeded).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--target",
    help="The measurement target (e.g. onnxruntime-cpu-fp32-b8), where the device was "
    "measured on several.",
)
def train(
    db: str,
    label: str,
    kind: str,
    campaigns: tuple[str, ...],
    lut_campaign: str | None,
    source_device: str | None,
    source_kind: str,
    source_target: str | None,
    k: int | None,
    seed: int,
    target: str | None,
) -> None:
    """Fit a predictor of end-to-end latency for device LABEL on one measurement target and
    store it in the fleet's predictors folder (one per device, target and kind)."""
    with ProgressReport() as progress:
        trained = train_predictor(
            Store(db),
            db,
            label,
            kind,
            campaigns=campaigns,
            lut_campaign=lut_campaign,
            source_device=source_device,
            source_kind=source_kind,
            source_target=source_target,
            k=k,
            seed=seed,
            target=target,
            progress=progress,
        )
    count = trained.training_subnets
    source = f"{count} subnets" if count else "its LUT"
    on = trained.model.provenance["target"]["name"]
    click.echo(f"{kind} predictor for {label} on {on} from {source} -> {trained.path}")
    metrics = trained.model.metrics
    if metrics:
        rows = {kind: metrics["held_out"], NOISE_FLOOR: metrics["noise_floor"]}
        records = _metric_records(rows)
        click.echo(render_table(records, METRIC_COLUMNS))
        _say_if_no_floor(records)
        _warn(rows)


@predictor.command("eval")
@DB
@click.option("--device", "label", required=True)
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(KINDS),
    multiple=True,
    help="Predictors to evaluate (default: every one trained for this device on the target).",
)
@click.option("--plot", type=click.Path(dir_okay=False), help="Write predicted vs measured (PNG).")
@TARGET
@format_option(csv=True)
def eval_(
    db: str, label: str, kinds: tuple[str, ...], plot: str | None, target: str | None, fmt: str
) -> None:
    """Evaluate a device's predictors of one measurement target on its held-out subnets of
    that target, beside the noise floor."""
    target, _ = trained_target(db, label, target)
    models = device_predictors(db, label, kinds, target)
    held_out = held_out_subnets(Store(db), label, scoring_target(models.values(), target))
    rows: dict[str, dict | None] = {
        kind: evaluate(model, own) if (own := of_supernet(held_out, model)) else None
        for kind, model in models.items()
    }
    rows[NOISE_FLOOR] = noise_floor(held_out)
    records = _metric_records(rows)
    emit(records, fmt, METRIC_COLUMNS)
    if fmt == TABLE:
        _say_if_no_floor(records)
    _warn(rows)
    if plot:
        plot_predictors(f"{label}, {target}", held_out, models, Path(plot))
        click.echo(f"plot -> {plot}", err=True)


@predictor.command()
@DB
@click.option("--device", "label", required=True)
@click.option("--kind", type=click.Choice(KINDS), default="lut-ridge", show_default=True)
@click.argument("configs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@TARGET
@format_option()
def predict(
    db: str, label: str, kind: str, configs: tuple[str, ...], target: str | None, fmt: str
) -> None:
    """Predicted latency (ms) of each subnet in CONFIGS (JSON, JSONL or net.config files)."""
    model = load_predictor(predictor_file(db, label, kind, target))
    subnets = [c for path in configs for c in load_configs(path)]
    latencies = model.predict(subnets)
    records = [
        {"id": subnet.id, "r": subnet.r, "latency_ms": float(ms), "config": subnet.to_dict()}
        for subnet, ms in zip(subnets, latencies, strict=True)
    ]
    columns = [
        Column("subnet", "id"),
        Column("r", "r", align="right"),
        Column("latency ms", "latency_ms", "{:.3f}".format, "right"),
    ]
    emit(records, fmt, columns)
