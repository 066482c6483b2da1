"""`ofa-coord predictor train|eval|predict`: per-device latency predictors."""

from __future__ import annotations

import random
from pathlib import Path

import click
import numpy as np

from coordinator import strict_json
from coordinator.cli.options import DB
from coordinator.services.predictor_data import (Measured, device_lut, measured_subnets, predictor_path,
                                        split)
from coordinator.state import Store
from ofa.config import load_configs
from ofa.latency_model import (KINDS, BlockTable, LatencyPredictor, fit_predictor, fit_transfer,
                               load_predictor)
from ofa.metrics import regression_metrics


@click.group()
def predictor() -> None:
    """Train, evaluate and query per-device latency predictors."""


def evaluate(model: LatencyPredictor, held_out: list[Measured]) -> dict:
    """Metrics against each repeat of the held-out subnets in turn, averaged: the same
    footing as the noise floor, which compares one repeat with the other."""
    predicted = model.predict([m.config for m in held_out])
    repeats = min(len(m.medians_ms) for m in held_out)
    runs = [regression_metrics(predicted, np.array([m.medians_ms[i] for m in held_out]))
            for i in range(repeats)]
    return {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}


def noise_floor(held_out: list[Measured]) -> dict | None:
    """The same metrics between two independent measurements of the held-out subnets."""
    twice = [m for m in held_out if len(m.medians_ms) >= 2]
    if len(twice) < 2:
        return None
    first, second = (np.array([m.medians_ms[i] for m in twice]) for i in (0, 1))
    runs = [regression_metrics(first, second), regression_metrics(second, first)]
    return {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}


@predictor.command()
@DB
@click.option("--device", "label", required=True)
@click.option("--kind", type=click.Choice(KINDS), default="lut-ridge", show_default=True)
@click.option("--campaign", "campaigns", multiple=True,
              help="Subnet campaigns to learn from (default: all on this device).")
@click.option("--lut-campaign", help="The LUT campaign to use (default: all on this device).")
@click.option("--source-device", help="transfer: the device whose predictor is adapted.")
@click.option("--source-kind", type=click.Choice(KINDS[:3]), default="lut-ridge",
              show_default=True)
@click.option("--k", "k", type=click.IntRange(min=1),
              help="transfer: use only K training subnets of this device (seeded).")
@click.option("--seed", type=int, default=0, show_default=True)
def train(db: str, label: str, kind: str, campaigns: tuple[str, ...], lut_campaign: str | None,
          source_device: str | None, source_kind: str, k: int | None, seed: int) -> None:
    """Fit a predictor of end-to-end latency for device LABEL and store it beside the DB."""
    store = Store(db)
    training, held_out = split(measured_subnets(store, label, list(campaigns) or None))
    if kind == "transfer":
        if not source_device:
            raise ValueError("source_device: transfer adapts another device's predictor; "
                             "give --source-device")
        source = load_predictor(predictor_path(db, source_device, source_kind))
        chosen = random.Random(seed).sample(training, min(k or len(training), len(training)))
        model = fit_transfer(source, [m.config for m in chosen], [m.median_ms for m in chosen])
        provenance = {"source_device": source_device, "source_kind": source_kind,
                      "k": len(chosen), "fitted_on": sorted(m.config.id for m in chosen)}
    else:
        lut, width, provenance = device_lut(store, label, lut_campaign)
        table = BlockTable.from_lut(lut, width)
        chosen = [m for m in training if m.config.w == width] if kind != "lut" else []
        model = fit_predictor(kind, table, [m.config for m in chosen] or None,
                              [m.median_ms for m in chosen] if chosen else None, seed=seed)
    model.provenance = {**provenance, "device": label, "training_subnets": len(chosen),
                        "subnet_campaigns": list(campaigns) or "all"}
    if held_out:
        model.metrics = {"held_out": evaluate(model, held_out), "noise_floor": noise_floor(held_out)}
    path = predictor_path(db, label, kind)
    model.save(path)
    source = f"{len(chosen)} subnets" if chosen else "its LUT"
    click.echo(f"{kind} predictor for {label} from {source} -> {path}")
    if held_out:
        click.echo(_table({kind: model.metrics["held_out"],
                           "noise floor": model.metrics["noise_floor"]}))


def _table(rows: dict[str, dict | None]) -> str:
    header = (f"{'':<14} {'n':>4} {'RMSE ms':>8} {'RMSE %':>7} {'MAPE %':>7} {'<=5%':>6} "
              f"{'<=10%':>6} {'tau':>6} {'rho':>6}")
    lines = [header]
    for name, m in rows.items():
        if m is None:
            lines.append(f"{name:<14} (needs two measurements of each held-out subnet)")
            continue
        lines.append(f"{name:<14} {m['n']:>4.0f} {m['rmse_ms']:>8.3f} {m['rmse_pct']:>7.2f} "
                     f"{m['mape_pct']:>7.2f} {m['within_5pct']:>6.1%} {m['within_10pct']:>6.1%} "
                     f"{m['kendall_tau']:>6.3f} {m['spearman_rho']:>6.3f}")
    return "\n".join(lines)


@predictor.command("eval")
@DB
@click.option("--device", "label", required=True)
@click.option("--kind", "kinds", type=click.Choice(KINDS), multiple=True,
              help="Predictors to evaluate (default: every one trained for this device).")
@click.option("--plot", type=click.Path(dir_okay=False), help="Write predicted vs measured (PNG).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True)
def eval_(db: str, label: str, kinds: tuple[str, ...], plot: str | None, fmt: str) -> None:
    """Evaluate a device's predictors on its held-out subnets, beside the noise floor."""
    store = Store(db)
    _, held_out = split(measured_subnets(store, label))
    if len(held_out) < 2:
        raise click.ClickException(f"device: {label!r} has {len(held_out)} held-out subnets "
                                   "measured end to end; run a random campaign on it")
    kinds = kinds or tuple(k for k in KINDS if predictor_path(db, label, k).exists())
    if not kinds:
        raise click.ClickException(f"device: no predictor trained for {label!r} "
                                   f"(ofa-coord predictor train --device {label})")
    models = {kind: load_predictor(predictor_path(db, label, kind)) for kind in kinds}
    rows = {kind: evaluate(model, held_out) for kind, model in models.items()}
    rows["noise floor"] = noise_floor(held_out)
    if fmt == "json":
        click.echo(strict_json.dumps(rows, indent=2))
    else:
        click.echo(_table(rows))
    if plot:
        from coordinator.services.plots import predicted_vs_measured
        measured = np.array([m.median_ms for m in held_out])
        series = {kind: (model.predict([m.config for m in held_out]), measured)
                  for kind, model in models.items()}
        predicted_vs_measured(series, Path(plot), f"{label}: {len(held_out)} held-out subnets")
        click.echo(f"plot -> {plot}", err=True)


@predictor.command()
@DB
@click.option("--device", "label", required=True)
@click.option("--kind", type=click.Choice(KINDS), default="lut-ridge", show_default=True)
@click.argument("configs", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
def predict(db: str, label: str, kind: str, configs: tuple[str, ...]) -> None:
    """Predicted latency (ms) of each subnet in CONFIGS (JSON, JSONL or net.config files)."""
    model = load_predictor(predictor_path(db, label, kind))
    subnets = [c for path in configs for c in load_configs(path)]
    latencies = model.predict(subnets)
    for subnet, ms in zip(subnets, latencies):
        click.echo(f"{subnet.id}  r={subnet.r}  {ms:.3f} ms")
