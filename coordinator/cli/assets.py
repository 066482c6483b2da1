"""`ofa-coord assets fetch`: the OFA authors' published files, fetched and checked against
pinned sha256 sums (coordinator/services/assets.py)."""

from __future__ import annotations

from pathlib import Path

import click

from coordinator.cli.options import FiniteFloat
from coordinator.services.assets import AUTHORS_URL, DEFAULT_DEST, PINNED, fetch_pinned
from ofa.accuracy import AccuracyPredictor

OFFICIAL_NPZ = "acc_predictor.npz"  # the official predictor in our torch-free format


@click.group()
def assets() -> None:
    """The OFA authors' published files, fetched and checked."""


@assets.command()
@click.option(
    "--dest",
    type=click.Path(file_okay=False),
    default=str(DEFAULT_DEST),
    show_default=True,
    help="Folder to put the files in (same layout as the authors').",
)
@click.option(
    "--base-url",
    default=AUTHORS_URL,
    show_default=True,
    help="Where to download from (a mirror with the same layout).",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=FiniteFloat(min=1, max=86400),
    default=60,
    show_default=True,
    help="Seconds without data before a download fails.",
)
def fetch(dest: str, base_url: str, timeout_s: float) -> None:
    """Download the official accuracy predictor and the Note10 LUTs, checking pinned sha256.

    Files already present with the right checksum are not downloaded again. The accuracy
    predictor is also written as DEST/acc_predictor.npz, which commands read without
    importing torch (a second or so sooner). Then use e.g. `ofa-coord specialize --lut
    DEST/note10 --acc-predictor DEST/acc_predictor.npz ...`."""
    folder = Path(dest)
    failed = []
    for outcome in fetch_pinned(folder, base_url, timeout_s):
        if outcome.state == "failed":
            failed.append(outcome.name)
            click.echo(f"FAILED   {outcome.name}: {outcome.problem}", err=True)
        else:
            click.echo(f"{outcome.state:<8} {folder / outcome.name}")
    if failed:
        raise ValueError(
            f"{len(failed)} of {len(PINNED)} file(s) not fetched: {', '.join(failed)}. Without "
            "network access, copy the files from a machine that has it (or give --base-url a "
            "mirror); every command also takes the files' paths directly"
        )
    click.echo(f"all {len(PINNED)} files in {folder} match their pinned sha256")
    converted = folder / OFFICIAL_NPZ
    AccuracyPredictor.load(folder / "acc_predictor.pth").save(converted)
    click.echo(f"written  {converted} (the accuracy predictor, read without torch)")
