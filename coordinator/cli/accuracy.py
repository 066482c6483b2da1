"""`ofa-coord accuracy train|eval`: our own accuracy predictor from (config, accuracy) pairs,
for a supernet trained on other data than ImageNet or at other resolutions."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from agent.output import Column, emit, format_option
from coordinator.cli.options import FiniteFloat
from coordinator.cli.output import ProgressReport
from ofa.accuracy import AccuracyPredictor, ResolutionEncoding
from ofa.nn.accuracy_training import (
    TrainSettings,
    evaluate,
    fit_accuracy_predictor,
    held_out,
    read_accuracy_pairs,
)

DATA = click.option(
    "--data",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="JSONL ({'config': {...}, 'accuracy': 0.75} per line) or CSV "
    "(columns config, accuracy); accuracy is a fraction.",
)


@click.group()
def accuracy() -> None:
    """Train and evaluate accuracy predictors (the official one needs no training)."""


def _print_metrics(name: str, metrics: dict) -> None:
    click.echo(
        f"{name}: {metrics['n']} pairs, RMSE {metrics['rmse_points']:.3f} top-1 points "
        f"(the mean alone: {metrics['constant_rmse_points']:.3f}), Kendall tau "
        f"{metrics['kendall_tau']:.3f}"
    )


@accuracy.command()
@DATA
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="Where to write the predictor (.npz, no pickle); its training settings and "
    "held-out metrics go beside it as .meta.json.",
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=TrainSettings.epochs, show_default=True
)
@click.option(
    "--batch-size", type=click.IntRange(min=1), default=TrainSettings.batch_size, show_default=True
)
@click.option(
    "--lr", type=FiniteFloat(min=0, min_open=True), default=TrainSettings.lr, show_default=True
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--holdout-every",
    type=click.IntRange(min=2),
    default=5,
    show_default=True,
    help="Hold out one architecture in N (by id, all its resolutions together) to report RMSE on.",
)
def train(
    data: str, out: str, epochs: int, batch_size: int, lr: float, seed: int, holdout_every: int
) -> None:
    """Fit the tutorial MLP with OFA's recipe (Adam, weight decay 1e-4, output bias = mean
    accuracy), report held-out RMSE and save it as .npz."""
    if not out.endswith(".npz"):
        raise click.BadParameter("expected a path ending in .npz", param_hint="--out")
    pairs = read_accuracy_pairs(data)
    mask = held_out(pairs, holdout_every)
    training, test = pairs.subset(~mask), pairs.subset(mask)
    if len(training.configs) < 2 or len(test.configs) < 2:
        raise ValueError(
            f"{data}: {len(pairs.configs)} pairs are too few to hold one "
            f"architecture in {holdout_every} out"
        )
    click.echo(
        f"training on {len(training.configs)} pairs, holding out {len(test.configs)}", err=True
    )
    started = time.perf_counter()
    encoding = ResolutionEncoding.for_resolutions([c.r for c in pairs.configs])
    with ProgressReport() as report:

        def progress(epoch: int, train_rmse: float) -> None:
            report("training", epoch, epochs, f"train RMSE {100 * train_rmse:.3f} points")

        predictor = fit_accuracy_predictor(
            training,
            TrainSettings(epochs=epochs, batch_size=batch_size, lr=lr, seed=seed),
            progress,
            encoding,
        )
    metrics = evaluate(predictor, test)
    predictor.save(out)
    _print_metrics("held out", metrics)
    e = predictor.encoding
    click.echo(
        f"wrote {out} ({predictor.supernet}, resolutions {e.trained[0]}..{e.trained[1]} "
        f"step {e.step}) in {time.perf_counter() - started:.1f} s"
    )
    Path(out[: -len(".npz")] + ".meta.json").write_text(
        json.dumps(
            {
                "data": data,
                "held_out": metrics,
                "epochs": epochs,
                "batch_size": batch_size,
                "lr": lr,
                "seed": seed,
                "holdout_every": holdout_every,
            },
            indent=2,
        )
    )


@accuracy.command(name="eval")
@DATA
@click.option(
    "--predictor",
    "path",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="OFA's acc_predictor.pth or our .npz.",
)
@format_option()
def evaluate_command(data: str, path: str, fmt: str) -> None:
    """RMSE and rank agreement of a predictor on every pair of a data file."""
    metrics = evaluate(AccuracyPredictor.load(path), read_accuracy_pairs(data))
    columns = [
        Column("predictor", "predictor"),
        Column("pairs", "n", align="right"),
        Column("RMSE (points)", "rmse_points", "{:.3f}".format, "right"),
        Column("the mean's", "constant_rmse_points", "{:.3f}".format, "right"),
        Column("Kendall tau", "kendall_tau", "{:.3f}".format, "right"),
    ]
    emit([{"predictor": path, **metrics}], fmt, columns)
