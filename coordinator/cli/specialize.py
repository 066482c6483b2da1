"""`ofa-coord specialize`: the best subnet for a device and latency budget, from the accuracy
predictor and the device's latency predictor (or any OFA LUT folder, such as Note10)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import click

from agent.output import JSON, Column, echo_json, format_option, render_table
from coordinator.cli.options import RESOLUTIONS, FiniteFloat, db_option, usable_cpus
from coordinator.cli.output import ProgressReport
from coordinator.services.deployment import fleet_scenarios, read_fleet_budgets, write_manifest
from coordinator.services.resnet_specialise import specialise_resnet
from coordinator.services.specialise import (
    Scenario,
    SpecialiseSettings,
    Verified,
    latency_budgets,
    latency_model,
    read_scenarios,
    specialise_scenarios,
    verify,
    write_scenarios,
)
from coordinator.services.targets import Target
from coordinator.state import Store
from ofa.latency_model import KINDS
from ofa.resnet import ResNetAccuracyPredictor
from ofa.search import SearchSettings
from ofa.zoo import load_accuracy_predictor

MAX_PARETO_POINTS = 1000
# The summary table: the choice per budget and, with --verify, what the device measured.
CHOSEN_COLUMNS = [
    Column("scenario", "scenario"),
    Column("budget ms", "budget_ms", "{:g}".format, "right"),
    Column("top-1", "accuracy", "{:.4f}".format, "right"),
    Column("predicted ms", "latency_ms", "{:.2f}".format, "right"),
    Column("MACs (M)", "macs", lambda macs: f"{macs / 1e6:.0f}", "right"),
    Column("params (M)", "params", lambda params: f"{params / 1e6:.2f}", "right"),
    Column("r", "r", align="right"),
]
VERIFIED_COLUMNS = [
    Column("measured ms", "measured_ms", "{:.2f}".format, "right"),
    Column("error %", "error_pct", "{:+.1f}".format, "right"),
]


RESNET_COLUMNS = [
    Column("budget", "budget", "{:g}".format, "right"),
    Column("unit", "unit"),
    Column("top-1", "accuracy", "{:.4f}".format, "right"),
    Column("predicted ms", "latency_ms", lambda ms: "-" if ms is None else f"{ms:.2f}", "right"),
    CHOSEN_COLUMNS[4],
    CHOSEN_COLUMNS[5],
    CHOSEN_COLUMNS[6],
]


def _specialise_resnet(
    accuracy: ResNetAccuracyPredictor,
    lut_dir: str | None,
    latency_ms: tuple[float, ...],
    max_macs: float | None,
    resolutions: tuple[int, ...] | None,
    generations: int,
    seed: int,
    folder: Path,
    fmt: str,
) -> None:
    with ProgressReport() as progress:
        chosen = specialise_resnet(
            accuracy,
            lut_dir,
            latency_ms,
            max_macs,
            resolutions,
            SearchSettings(generations=generations, seed=seed),
            folder,
            progress,
        )
    rows = [choice.row() for choice in chosen]
    if fmt == JSON:
        echo_json(rows)
    else:
        click.echo(render_table(rows, RESNET_COLUMNS))


def _pareto_range(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[float, float, int] | None:
    """`--pareto MIN:MAX:COUNT` as (MIN, MAX, COUNT): finite, 0 < MIN <= MAX, and a count
    of points a front can use."""
    if not value:
        return None
    try:
        low_text, high_text, count_text = value.split(":")
        low, high, count = float(low_text), float(high_text), int(count_text)
    except ValueError:
        raise click.BadParameter(
            f"expected MIN:MAX:COUNT, got {value!r}", param_hint="--pareto"
        ) from None
    if not (0 < low <= high < math.inf and 1 <= count <= MAX_PARETO_POINTS):
        raise click.BadParameter(
            f"expected 0 < MIN <= MAX (finite, ms) and COUNT in "
            f"1..{MAX_PARETO_POINTS}, got {value!r}",
            param_hint="--pareto",
        )
    return low, high, count


@click.command()
@db_option(must_exist=True, required=False, help="The coordinator's database (with --device).")
@click.option("--device", "label", help="Use this device's trained latency predictor.")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    default="lut-ridge",
    show_default=True,
    help="Which of the device's predictors.",
)
@click.option(
    "--target",
    help="With --device: the measurement target of its predictor, where it has several.",
)
@click.option(
    "--lut",
    "lut_dir",
    type=click.Path(exists=True, file_okay=False),
    help="Or: a folder of OFA {r}_lookup_table.yaml files (e.g. Note10).",
)
@click.option(
    "--latency-ms",
    type=FiniteFloat(min=0, min_open=True),
    multiple=True,
    help="Latency budget (repeatable).",
)
@click.option(
    "--pareto",
    callback=_pareto_range,
    help="Also budgets MIN:MAX:COUNT, for the accuracy-latency front.",
)
@click.option(
    "--scenarios",
    "scenarios_file",
    type=click.Path(exists=True, dir_okay=False),
    help="Or: a JSON list of {lut|device, kind?, target?, name?, latency_ms: [...]}; one table.",
)
@click.option(
    "--fleet",
    "fleet_file",
    type=click.Path(exists=True, dir_okay=False),
    help='Or (with --db): every device at once, from {"LABEL": [ms, ...] | {"latency_ms": '
    '[...], "kind": K, "target": T}}; each with its best predictor unless a kind is given; writes '
    "manifest.json (with --verify, measured on every device).",
)
@click.option(
    "--acc-predictor",
    type=click.Path(exists=True, dir_okay=False),
    required=True,
    help="OFA's acc_predictor.pth, or our .npz; or OFA's ofa_resnet50_acc_predictor.pth, "
    "which searches ResNet50 subnets (with a ResNet50 --lut and --latency-ms, or --max-macs).",
)
@click.option(
    "--resolutions",
    type=RESOLUTIONS,
    help="Allowed resolutions (default: those of the latency model, 160 and up).",
)
@click.option(
    "--max-macs", type=FiniteFloat(min=0, min_open=True), help="Also a MACs budget (in millions)."
)
@click.option(
    "--max-params",
    type=FiniteFloat(min=0, min_open=True),
    help="Also a budget of parameters (in millions).",
)
@click.option(
    "--max-size-mb",
    type=FiniteFloat(min=0, min_open=True),
    help="Also a budget of the weights' size in MB (flash on a small device), at the latency "
    "model's precision: 4 bytes a weight for fp32, 2 for fp16, 1 for int8 (fp32 for a LUT "
    "folder or a predictor from before targets).",
)
@click.option(
    "--max-peak-mb",
    type=FiniteFloat(min=0, min_open=True),
    help="Also a budget of peak memory in MB while the subnet runs on the device (a model fit "
    "on what its agents recorded measuring subnets on the predictor's target; needs --db with "
    "--device, --fleet or device scenarios).",
)
@click.option(
    "--generations",
    type=click.IntRange(min=1),
    default=SearchSettings.generations,
    show_default=True,
    help="Evolution generations before the local search.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--jobs",
    type=click.IntRange(min=0),
    default=0,
    help="Processes searching scenarios side by side (--scenarios, --fleet). Default: one per "
    "CPU this command may use. Each answer is the same whatever the number.",
)
@click.option(
    "--supernet",
    "supernet_path",
    type=click.Path(exists=True, dir_okay=False),
    help="Supernet checkpoint: also write each subnet's weights (subnet.pth) and "
    "ONNX (subnet.onnx), with the supernet's BN statistics.",
)
@click.option(
    "--verify",
    "verify_on_device",
    is_flag=True,
    help="Measure the chosen subnets on the device's agents (needs --device and a "
    "running coordinator) and report measured against predicted.",
)
@click.option(
    "--verify-timeout",
    type=FiniteFloat(min=1),
    default=900,
    show_default=True,
    help="Seconds to wait for the measurements; then the campaign is cancelled.",
)
@click.option("--out", type=click.Path(file_okay=False), required=True)
@format_option()
def specialize(
    db,
    label,
    kind,
    target,
    lut_dir,
    latency_ms,
    pareto,
    scenarios_file,
    fleet_file,
    acc_predictor,
    resolutions,
    max_macs,
    max_params,
    max_size_mb,
    max_peak_mb,
    generations,
    seed,
    jobs,
    supernet_path,
    verify_on_device,
    verify_timeout,
    out,
    fmt,
) -> None:
    """Search the most accurate subnet under each latency budget and write its config.

    With the ResNet50 accuracy predictor, the subnets are OFA-ResNet50's: budgets in ms from
    a ResNet50 LUT folder (`--lut`), or one MACs budget (`--max-macs` alone)."""
    started = time.perf_counter()
    folder = Path(out)
    if target and not label:
        raise click.UsageError("--target goes with --device")
    if fleet_file and (label or lut_dir or scenarios_file or not db):
        raise click.UsageError("--fleet takes --db and no --device, --lut or --scenarios")
    if verify_on_device and not label and not fleet_file:
        raise click.UsageError("--verify measures on a device: give --db and --device (or --fleet)")
    accuracy = load_accuracy_predictor(acc_predictor)
    if isinstance(accuracy, ResNetAccuracyPredictor):
        others = (label, scenarios_file, fleet_file, pareto, max_params, max_size_mb)
        if any(others) or max_peak_mb or supernet_path or verify_on_device:
            raise click.UsageError(
                "a ResNet50 accuracy predictor takes --lut (a ResNet50 LUT) with --latency-ms, "
                "or --max-macs alone; --resolutions, --generations, --seed and --max-macs"
            )
        _specialise_resnet(
            accuracy, lut_dir, latency_ms, max_macs, resolutions, generations, seed, folder, fmt
        )
        click.echo(
            f"ResNet50 in {time.perf_counter() - started:.2f} s; results in {folder}",
            err=fmt == JSON,
        )
        return
    store = Store(db) if verify_on_device else None  # a bad database fails before the search
    supernet = None
    if supernet_path:
        from ofa.nn.checkpoint import load_mbconv_supernet  # torch only when weights are asked

        supernet = load_mbconv_supernet(supernet_path)
    if fleet_file:
        scenarios = fleet_scenarios(db, read_fleet_budgets(fleet_file))
    elif scenarios_file:
        scenarios = read_scenarios(scenarios_file)
        if not db and any(scenario.device for scenario in scenarios):
            raise click.UsageError("scenarios with a 'device' need --db")
    else:
        if bool(label) == bool(lut_dir) or (label and not db):
            raise click.UsageError("give either --db and --device, or --lut (or --scenarios)")
        if not latency_ms and not pareto:
            raise click.UsageError("give --latency-ms (repeatable) or --pareto MIN:MAX:COUNT")
        scenarios = [
            Scenario("", tuple(latency_budgets(latency_ms, pareto)), label, kind, lut_dir, target)
        ]
    with ProgressReport() as progress:
        table = specialise_scenarios(
            db,
            scenarios,
            accuracy,
            folder,
            SpecialiseSettings(
                resolutions, max_macs, generations, seed, max_params, max_size_mb, max_peak_mb
            ),
            supernet,
            progress,
            jobs or usable_cpus(),
        )
    rows = [{"scenario": scenario.name, **choice.row()} for scenario, choice in table]
    columns = CHOSEN_COLUMNS[0 if scenarios_file or fleet_file else 1 :]
    checked: dict[tuple[str, float], Verified] = {}
    if store is not None:
        for scenario in scenarios:  # one verify campaign per device, on its predictor's target
            device = str(scenario.device or label)
            picks = [choice for of, choice in table if of is scenario]
            with ProgressReport() as progress:
                verified = verify(
                    store,
                    device,
                    picks,
                    folder / scenario.name,
                    verify_timeout,
                    lambda line: click.echo(line, err=True),
                    progress,
                    Target.recorded(latency_model(db, scenario).provenance),
                )
            checked |= {(device, v.budget_ms): v for v in verified}
        for row, (scenario, choice) in zip(rows, table, strict=True):
            found = checked[(str(scenario.device or label), choice.budget_ms)]
            row.update(  # a subnet left unmeasured has no error (NaN): null, shown as -
                measured_ms=found.measured_ms,
                error_pct=found.error_pct if found.measured_ms else None,
            )
        columns += VERIFIED_COLUMNS
    if fleet_file:
        manifest = write_manifest(db, folder, table, checked, str(acc_predictor))
        click.echo(f"deployment manifest -> {manifest}", err=fmt == JSON)
    if fmt == JSON:
        echo_json(rows)
    else:
        click.echo(render_table(rows, columns))
    if scenarios_file:
        write_scenarios(table, folder)
    click.echo(
        f"{len(table)} scenario(s) in {time.perf_counter() - started:.2f} s; results in {folder}",
        err=fmt == JSON,  # stdout holds only the JSON
    )
