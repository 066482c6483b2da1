"""`ofa-coord predictor train|eval|predict`: per-device latency predictors."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from coordinator import strict_json
from coordinator.cli.options import DB
from coordinator.services.predictor_data import predictor_path
from coordinator.services.predictors import (
    device_predictors,
    evaluate,
    held_out_subnets,
    noise_floor,
    train_predictor,
)
from coordinator.state import Store
from ofa.config import load_configs
from ofa.latency_model import KINDS, TABLE_KINDS, load_predictor


@click.group()
def predictor() -> None:
    """Train, evaluate and query per-device latency predictors."""


@predictor.command()
@DB
@click.option("--device", "label", required=True)
@click.option("--kind", type=click.Choice(KINDS), default="lut-ridge", show_default=True)
@click.option(
    "--campaign",
    "campaigns",
    multiple=True,
    help="Subnet campaigns to learn from (default: all on this device).",
)
@click.option("--lut-campaign", help="The LUT campaign to use (default: all on this device).")
@click.option("--source-device", help="transfer: the device whose predictor is adapted.")
@click.option(
    "--source-kind", type=click.Choice(TABLE_KINDS), default="lut-ridge", show_default=True
)
@click.option(
    "--k",
    "k",
    type=click.IntRange(min=1),
    help="transfer: use only K training subnets of this device (seeded).",
)
@click.option("--seed", type=int, default=0, show_default=True)
def train(
    db: str,
    label: str,
    kind: str,
    campaigns: tuple[str, ...],
    lut_campaign: str | None,
    source_device: str | None,
    source_kind: str,
    k: int | None,
    seed: int,
) -> None:
    """Fit a predictor of end-to-end latency for device LABEL and store it beside the DB."""
    trained = train_predictor(
        Store(db),
        db,
        label,
        kind,
        campaigns=campaigns,
        lut_campaign=lut_campaign,
        source_device=source_device,
        source_kind=source_kind,
        k=k,
        seed=seed,
    )
    count = trained.training_subnets
    source = f"{count} subnets" if count else "its LUT"
    click.echo(f"{kind} predictor for {label} from {source} -> {trained.path}")
    metrics = trained.model.metrics
    if metrics:
        click.echo(_table({kind: metrics["held_out"], "noise floor": metrics["noise_floor"]}))


def _table(rows: dict[str, dict | None]) -> str:
    header = (
        f"{'':<14} {'n':>4} {'RMSE ms':>8} {'RMSE %':>7} {'MAPE %':>7} {'<=5%':>6} "
        f"{'<=10%':>6} {'tau':>6} {'rho':>6}"
    )
    lines = [header]
    for name, m in rows.items():
        if m is None:
            lines.append(f"{name:<14} (needs two measurements of each held-out subnet)")
            continue
        lines.append(
            f"{name:<14} {m['n']:>4.0f} {m['rmse_ms']:>8.3f} {m['rmse_pct']:>7.2f} "
            f"{m['mape_pct']:>7.2f} {m['within_5pct']:>6.1%} {m['within_10pct']:>6.1%} "
            f"{m['kendall_tau']:>6.3f} {m['spearman_rho']:>6.3f}"
        )
    return "\n".join(lines)


@predictor.command("eval")
@DB
@click.option("--device", "label", required=True)
@click.option(
    "--kind",
    "kinds",
    type=click.Choice(KINDS),
    multiple=True,
    help="Predictors to evaluate (default: every one trained for this device).",
)
@click.option("--plot", type=click.Path(dir_okay=False), help="Write predicted vs measured (PNG).")
@click.option(
    "--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def eval_(db: str, label: str, kinds: tuple[str, ...], plot: str | None, fmt: str) -> None:
    """Evaluate a device's predictors on its held-out subnets, beside the noise floor."""
    held_out = held_out_subnets(Store(db), label)
    models = device_predictors(db, label, kinds)
    rows: dict[str, dict | None] = {
        kind: evaluate(model, held_out) for kind, model in models.items()
    }
    rows["noise floor"] = noise_floor(held_out)
    if fmt == "json":
        click.echo(strict_json.dumps(rows, indent=2))
    else:
        click.echo(_table(rows))
    if plot:
        from coordinator.services.plots import predicted_vs_measured

        measured = np.array([m.median_ms for m in held_out])
        series = {
            kind: (model.predict([m.config for m in held_out]), measured)
            for kind, model in models.items()
        }
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
    for subnet, ms in zip(subnets, latencies, strict=True):
        click.echo(f"{subnet.id}  r={subnet.r}  {ms:.3f} ms")
