"""`ofa-coord demo`: the main job, on this machine (the flow is
coordinator.services.demo's): its options, its progress on stderr and its summary."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from coordinator.cli.options import RESOLUTIONS, FiniteFloat
from coordinator.services.campaigns import render_progress
from coordinator.services.demo import (
    DemoRun,
    DemoSettings,
    Reporter,
    load_accuracy_predictor,
    run_demo,
)
from coordinator.services.waiting import Progress


@click.command()
@click.option(
    "--resolutions",
    type=RESOLUTIONS,
    default="160",
    show_default=True,
    help="Resolutions of the LUT campaigns (random subnets are sampled among them).",
)
@click.option(
    "--subnets",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Random subnets measured end to end per device.",
)
@click.option("--repeats", type=click.IntRange(min=1), default=2, show_default=True)
@click.option(
    "--min-time",
    type=FiniteFloat(min=0),
    default=0.3,
    show_default=True,
    help="Seconds of timed runs per measurement at least.",
)
@click.option("--warmup-time", type=FiniteFloat(min=0), default=0.2, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--acc-predictor",
    type=click.Path(exists=True, dir_okay=False),
    help="An accuracy predictor (OFA's acc_predictor.pth, or one from `ofa-coord "
    "accuracy train`): measure its supernet's width and end by specialising "
    "each device at two budgets.",
)
@click.option(
    "--run-dir",
    type=click.Path(file_okay=False),
    default="runs",
    show_default=True,
    help="Parent folder of this run's folder.",
)
def demo(
    resolutions: tuple[int, ...],
    subnets: int,
    repeats: int,
    min_time: float,
    warmup_time: float,
    seed: int,
    acc_predictor: str | None,
    run_dir: str,
) -> None:
    """Run the whole flow locally: coordinator, two agents, LUT and random-subnet campaigns
    per device class, LUT export, specialisation (given --acc-predictor), summary."""
    accuracy = None
    if acc_predictor:
        accuracy = load_accuracy_predictor(acc_predictor, resolutions)
        click.echo(
            f"accuracy predictor {acc_predictor}: measuring the w{accuracy.width} supernet",
            err=True,
        )
    else:
        click.echo(
            "no --acc-predictor given: the demo measures w1.0 and stops before "
            "specialisation (see the README: `ofa-coord assets fetch`, then `make demo "
            "DEMO_ARGS=--acc-predictor=PATH`)",
            err=True,
        )
    settings = DemoSettings(resolutions, subnets, repeats, min_time, warmup_time, seed)
    run = run_demo(
        settings,
        accuracy,
        Path(run_dir),
        Reporter(lambda line: click.echo(line, err=True), _ProgressLine()),
    )
    _print_summary(run)


class _ProgressLine:
    """A campaign's progress on stderr: one line kept up to date on a terminal, otherwise
    a line every 15 s; the finished campaign's line in full."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()
        self.last = -float("inf")

    def __call__(self, progress: Progress) -> None:
        line = render_progress(progress.status)
        if progress.finished:
            click.echo(("\r" if self.live else "") + line, err=True)
        elif self.live:
            click.echo("\r" + line, nl=False, err=True)
        elif time.monotonic() - self.last > 15:
            click.echo(line, err=True)
            self.last = time.monotonic()


def _print_summary(run: DemoRun) -> None:
    summary, chosen, wall, folder = run.devices, run.specialised, run.wall_s, run.folder
    click.echo(
        f"\n{'device':<8} {'LUT entries':>11} {'subnets':>7} {'LUT time':>9} "
        f"{'subnet time':>11} {'repeat spread':>13} {'LUT sum/measured':>22}"
    )
    for d in summary:
        ratio = d["lut_sum_over_measured"]
        spread = "-" if d["lut_repeat_spread"] is None else f"{d['lut_repeat_spread']:.1%}"
        click.echo(
            f"{d['label']:<8} {d['lut_entries']:>11} {d['subnets']:>7} "
            f"{d['lut_wall_s']:>8.0f}s {d['random_wall_s']:>10.0f}s {spread:>13} "
            f"{ratio['median']:>8.2f} ({ratio['min']:.2f}-{ratio['max']:.2f})"
        )
        if d["lut_missing"] or d["lut_drift_flagged"]:
            click.echo(
                f"  {d['lut_missing']} LUT entries missing, {d['lut_drift_flagged']} drift-flagged"
            )
    if chosen:
        click.echo(
            f"\n{'device':<8} {'budget':>8} {'top-1':>7} {'LUT sum':>9} {'measured':>9} {'r':>4}"
        )
        for row in chosen:
            measured = f"{row['measured_ms']:.2f}" if row["measured_ms"] else "-"
            click.echo(
                f"{row['label']:<8} {row['budget_ms']:>6.2f}ms {row['accuracy']:>7.4f} "
                f"{row['latency_ms']:>7.2f}ms {measured:>7}ms {row['r']:>4}"
            )
        click.echo(
            "specialised: the most accurate subnet (predicted top-1) under each budget by "
            "the device's LUT, then measured on it; files in specialised/."
        )
    click.echo(
        f"\nrepeat spread: median over models of (max - min) / median of the repeats' "
        f"medians.\nLUT sum/measured: OFA's LUT-sum estimate of each random subnet over "
        f"its measured median.\nWall time {wall:.0f} s. Everything is in {folder}: "
        f"fleet.db, lut-*/ (OFA yaml + JSON), specialised/, summary.json, logs."
    )
