"""`ofa-coord train run|chain|accuracy-dataset`: progressive shrinking and accuracy data.

`run` and `chain` also run under `torchrun --nproc_per_node N -m coordinator train ...`.
"""

from __future__ import annotations

from pathlib import Path

import click

from coordinator.cli.options import RESOLUTIONS, supernet_options
from coordinator.cli.output import ProgressReport

DATA = click.option(
    "--data",
    "source",
    required=True,
    help="'digits' (scikit-learn's bundled digits) or a folder holding "
    "train/<class>/*.jpg and val/<class>/*.jpg.",
)
THREADS = click.option(
    "--threads",
    type=click.IntRange(min=1),
    help="Torch CPU threads per process (default: torch's choice).",
)


@click.group()
def train() -> None:
    """Train a supernet by progressive shrinking and measure its subnets."""


def _supernet(family: str, width: float) -> str:
    """OFA's name of the supernet to train."""
    from ofa import resnet, space
    from ofa.zoo import check_family

    try:
        check_family(family, width)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("width: "), param_hint="--width") from None
    return resnet.SUPERNET if family == resnet.FAMILY else space.FAMILIES[family].supernet(width)


def _prepare(source: str, threads: int | None):
    """The data splits, after setting the thread count (ValueError for bad data)."""
    import torch

    from ofa.nn.data import open_data

    if threads:
        torch.set_num_threads(threads)
    return open_data(source)


@train.command()
@click.argument("schedule", type=click.Path(exists=True, dir_okay=False))
@DATA
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder for checkpoint.pt and eval.json; an unfinished run there resumes.",
)
@click.option(
    "--init",
    type=click.Path(exists=True, dir_okay=False),
    help="Start from this checkpoint (the previous phase's).",
)
@click.option(
    "--teacher",
    type=click.Path(exists=True, dir_okay=False),
    help="Checkpoint whose full network is distilled (phases with kd_ratio > 0).",
)
@supernet_options
@click.option(
    "--stop-after",
    type=click.IntRange(min=1),
    help="End this invocation after this step, leaving a resumable checkpoint.",
)
@THREADS
def run(
    schedule: str,
    source: str,
    out: str,
    init: str | None,
    teacher: str | None,
    family: str,
    width: float,
    stop_after: int | None,
    threads: int | None,
) -> None:
    """Run or resume one phase described by the SCHEDULE file."""
    from ofa.nn.train import CHECKPOINT, Processes, train_phase
    from ofa.schedule import load_phase

    supernet = _supernet(family, width)
    phase = load_phase(schedule, family)
    data = _prepare(source, threads)
    with Processes.from_env() as processes:
        train_phase(
            phase,
            data,
            out,
            supernet=supernet,
            init=init,
            teacher=teacher,
            processes=processes,
            stop_after=stop_after,
            log=ProgressReport().say,
        )
        if processes.is_main:
            click.echo(f"{phase.name}: {Path(out) / CHECKPOINT}")


@train.command()
@click.argument("chain_file", metavar="CHAIN", type=click.Path(exists=True, dir_okay=False))
@DATA
@click.option(
    "--out",
    required=True,
    type=click.Path(file_okay=False),
    help="Folder with one sub-folder per phase; finished phases are skipped.",
)
@supernet_options
@THREADS
def chain(
    chain_file: str, source: str, out: str, family: str, width: float, threads: int | None
) -> None:
    """Run every phase of the CHAIN file in order (resuming a stopped chain)."""
    from ofa.nn.train import CHECKPOINT, Processes, train_chain
    from ofa.schedule import load_chain

    supernet = _supernet(family, width)
    plan = load_chain(chain_file, family)
    data = _prepare(source, threads)
    with Processes.from_env() as processes:
        train_chain(
            plan, data, out, supernet=supernet, processes=processes, log=ProgressReport().say
        )
        if processes.is_main:
            click.echo(f"chain finished: {Path(out) / plan.phases[-1].name / CHECKPOINT}")


@train.command("accuracy-dataset")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False))
@DATA
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="JSONL file to write.")
@click.option(
    "--subnets",
    "n_subnets",
    type=click.IntRange(min=1),
    required=True,
    help="Architectures to sample; each is evaluated at every resolution.",
)
@click.option("--resolutions", type=RESOLUTIONS, required=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--calibration-images",
    type=click.IntRange(min=1),
    default=2000,
    show_default=True,
    help="Training images (a fixed slice) for BN statistics.",
)
@click.option("--batch-size", type=click.IntRange(min=1), default=200, show_default=True)
@THREADS
def accuracy_dataset(
    checkpoint: str,
    source: str,
    out: str,
    n_subnets: int,
    resolutions: tuple[int, ...],
    seed: int,
    calibration_images: int,
    batch_size: int,
    threads: int | None,
) -> None:
    """Sample subnets of CHECKPOINT, recalibrate BN, evaluate, write (config, accuracy) JSONL."""
    import os

    from ofa.nn.accuracy_dataset import build_accuracy_dataset

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise click.UsageError("accuracy-dataset runs in one process; start it without torchrun")
    data = _prepare(source, threads)
    rows = build_accuracy_dataset(
        checkpoint,
        data,
        out,
        n_subnets,
        resolutions,
        seed,
        calibration_images,
        batch_size,
        log=ProgressReport().say,
    )
    click.echo(f"{len(rows)} subnets -> {out}")
