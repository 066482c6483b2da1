"""`ofa-coord specialize`: the best subnet for a device and latency budget, from the accuracy
predictor and the device's latency predictor (or any OFA LUT folder, such as Note10)."""

from __future__ import annotations

import csv
import json
import math
import re
import time
import uuid
from pathlib import Path

import click
import numpy as np

from coordinator.state import BlobStore
from coordinator.services.campaigns import (CampaignSpec, Target, campaign_status, cancel_campaign,
                                   create_campaign, render_progress, unserved_targets)
from coordinator.cli.options import RESOLUTIONS, FiniteFloat, db_option
from coordinator.services.predictor_data import measured_subnets, predictor_path
from coordinator.state import Store
from ofa.accuracy import AccuracyPredictor
from ofa.config import SubnetConfig
from ofa.latency_model import KINDS, BlockTable, LatencyPredictor, fit_predictor, load_predictor
from ofa.lut import LatencyTable
from ofa.plan import count_macs, space_lut_specs
from ofa.search import SearchSettings, evolutionary_search
from ofa import space


def lut_folder_predictor(folder: str | Path) -> LatencyPredictor:
    """OFA yaml tables as a `lut` predictor; the width is read off the first conv's key."""
    tables = LatencyTable.from_ofa_yaml(folder)
    first = next(k for k in next(iter(tables.entries.values())) if k.startswith("Conv-"))
    channels = int(re.search(r"output:\d+x\d+x(\d+)", first).group(1))
    width = next((w for w in space.WIDTH_CHOICES if space.stage_widths(w)[0] == channels), None)
    if width is None:
        raise ValueError(f"lut: first conv has {channels} channels; not an OFA MobileNetV3 width")
    lut = tables.means()
    return fit_predictor("lut", BlockTable.from_lut(lut, width))


MAX_PARETO_POINTS = 1000


def _budgets(latency_ms: tuple[float, ...], pareto: str | None) -> list[float]:
    budgets = list(latency_ms)
    if pareto:
        try:
            low, high, count = pareto.split(":")
            low, high, count = float(low), float(high), int(count)
        except ValueError:
            raise click.BadParameter(f"expected MIN:MAX:COUNT, got {pareto!r}",
                                     param_hint="--pareto") from None
        if not (0 < low <= high < math.inf and 1 <= count <= MAX_PARETO_POINTS):
            raise click.BadParameter(f"expected 0 < MIN <= MAX (finite, ms) and COUNT in "
                                     f"1..{MAX_PARETO_POINTS}, got {pareto!r}",
                                     param_hint="--pareto")
        budgets += np.linspace(low, high, count).round(3).tolist()
    if not budgets:
        raise click.UsageError("give --latency-ms (repeatable) or --pareto MIN:MAX:COUNT")
    return sorted(set(budgets))


def _latency_model(db: str | None, label: str | None, kind: str, lut_dir: str | None
                   ) -> LatencyPredictor:
    if not label:
        return lut_folder_predictor(lut_dir)
    path = predictor_path(db, label, kind)
    if not path.is_file():
        raise ValueError(f"device: no {kind} predictor for {label!r} ({path}); train it with "
                         f"`ofa-coord predictor train --db {db} --device {label} --kind {kind}`")
    return load_predictor(path)


def allowed_resolutions(latency: LatencyPredictor, resolutions: tuple[int, ...] | None
                         ) -> tuple[int, ...]:
    known = (latency.source or latency).table.resolutions.tolist()
    allowed = resolutions or tuple(r for r in known if r >= 160) or tuple(known)
    unknown = sorted(set(allowed) - set(known))
    if unknown:
        raise ValueError(f"resolutions: the latency model has no table for {unknown}; "
                         f"it knows {known}")
    return allowed


def _write_subnet(supernet, config: SubnetConfig, folder: Path) -> None:
    """The subnet's own weights (`{"state_dict": ...}` of the static network) and its ONNX."""
    from ofa.nn.checkpoint import save_checkpoint
    from ofa.nn.export import export_module

    net = supernet.get_active_subnet(config).eval()
    save_checkpoint(net, folder / "subnet.pth")
    (folder / "subnet.onnx").write_bytes(export_module(net, (1, 3, config.r, config.r)).onnx)


def specialise(latency: LatencyPredictor, accuracy: AccuracyPredictor, budgets: list[float],
               resolutions: tuple[int, ...] | None, max_macs: float | None, generations: int,
               seed: int, folder: Path, source: dict, supernet=None) -> list[dict]:
    """Search each budget; write `<budget>ms/subnet.json` and `result.json` (and, given a
    supernet, the subnet's weights and ONNX); return rows."""
    if supernet is not None and supernet.width != latency.width:
        raise ValueError(f"supernet: the checkpoint is a w{supernet.width} supernet, the latency "
                         f"model is for w{latency.width} subnets")
    if latency.width != accuracy.width:
        raise ValueError(f"width: the latency model is for w{latency.width} subnets, the accuracy "
                         f"predictor for w{accuracy.width}; measure the w{accuracy.width} space "
                         "(campaign --width) or give an accuracy predictor for that width")
    allowed = allowed_resolutions(latency, resolutions)
    feasible = None
    if max_macs:
        macs = BlockTable.from_lut({r: {s.lut_key: s.macs() for s in space_lut_specs(r, latency.width)}
                                    for r in allowed}, latency.width)
        feasible = lambda batch: macs.lut_sum(batch) <= max_macs * 1e6  # noqa: E731
    rows = []
    for budget in budgets:
        result = evolutionary_search(accuracy.predict, latency.predict, budget, allowed,
                                     latency.width, SearchSettings(generations=generations,
                                                                   seed=seed), feasible)
        row = {"budget_ms": budget, "latency_ms": result.latency_ms, "accuracy": result.accuracy,
               "macs": count_macs(result.config), "r": result.config.r, "id": result.config.id}
        rows.append(row)
        target = folder / f"{budget:g}ms"
        target.mkdir(parents=True, exist_ok=True)
        (target / "subnet.json").write_text(result.config.to_json() + "\n")
        (target / "result.json").write_text(json.dumps({
            **row, "config": result.config.to_dict(), "generations": result.generations,
            "latency_model": {**source, "kind": latency.kind,
                              "provenance": latency.provenance}}, indent=2))
        if supernet is not None:
            _write_subnet(supernet, result.config, target)
    return rows


def _write_front(rows: list[dict], folder: Path) -> None:
    with (folder / "pareto.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    if len(rows) > 1:
        from coordinator.services.plots import accuracy_latency_front
        accuracy_latency_front(rows, folder / "pareto.png")


def _scenarios(path: str) -> list[tuple[str, dict]]:
    """(output folder name, scenario) for each entry of a JSON list of `{"lut": DIR |
    "device": LABEL, "kind"?, "name"?, "latency_ms": [..]}`; names are distinct folder names,
    so no two scenarios write into one folder."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a JSON list of scenarios")
    named: dict[str, int] = {}
    for i, item in enumerate(data):
        if not isinstance(item, dict) or ("lut" in item) == ("device" in item):
            raise ValueError(f"{path}: scenario {i}: give exactly one of 'lut' or 'device'")
        budgets = item.get("latency_ms")
        if not isinstance(budgets, list) or not budgets or not all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and 0 < b < math.inf
                for b in budgets):
            raise ValueError(f"{path}: scenario {i}: latency_ms: expected a list of positive "
                             f"budgets, got {budgets!r}")
        name = item.get("name") or item.get("device") or Path(str(item["lut"])).name or str(i)
        if not isinstance(name, str) or name in (".", "..") or "/" in name or "\\" in name \
                or not name.isprintable():
            raise ValueError(f"{path}: scenario {i}: name: expected a folder name, got {name!r}")
        if name in named:
            raise ValueError(f"{path}: scenario {i}: name: {name!r} is scenario {named[name]}'s "
                             "too, and both would write into one folder; give each a distinct "
                             "'name'")
        named[name] = i
    return list(zip(named, data))


@click.command()
@db_option(must_exist=True, required=False, help="The coordinator's database (with --device).")
@click.option("--device", "label", help="Use this device's trained latency predictor.")
@click.option("--kind", type=click.Choice(KINDS), default="lut-ridge", show_default=True,
              help="Which of the device's predictors.")
@click.option("--lut", "lut_dir", type=click.Path(exists=True, file_okay=False),
              help="Or: a folder of OFA {r}_lookup_table.yaml files (e.g. Note10).")
@click.option("--latency-ms", type=FiniteFloat(min=0, min_open=True), multiple=True,
              help="Latency budget (repeatable).")
@click.option("--pareto", help="Also budgets MIN:MAX:COUNT, for the accuracy-latency front.")
@click.option("--scenarios", "scenarios_file", type=click.Path(exists=True, dir_okay=False),
              help="Or: a JSON list of {lut|device, kind?, name?, latency_ms: [...]}; one table.")
@click.option("--acc-predictor", type=click.Path(exists=True, dir_okay=False), required=True,
              help="OFA's acc_predictor.pth, or our .npz.")
@click.option("--resolutions", type=RESOLUTIONS,
              help="Allowed resolutions (default: those of the latency model, 160 and up).")
@click.option("--max-macs", type=FiniteFloat(min=0, min_open=True),
              help="Also a MACs budget (in millions).")
@click.option("--generations", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--supernet", "supernet_path", type=click.Path(exists=True, dir_okay=False),
              help="Supernet checkpoint: also write each subnet's weights (subnet.pth) and "
                   "ONNX (subnet.onnx), with the supernet's BN statistics.")
@click.option("--verify", is_flag=True,
              help="Measure the chosen subnets on the device's agents (needs --device and a "
                   "running coordinator) and report measured against predicted.")
@click.option("--verify-timeout", type=FiniteFloat(min=1), default=900, show_default=True,
              help="Seconds to wait for the measurements; then the campaign is cancelled.")
@click.option("--out", type=click.Path(file_okay=False), required=True)
def specialize(db, label, kind, lut_dir, latency_ms, pareto, scenarios_file, acc_predictor,
               resolutions, max_macs, generations, seed, supernet_path, verify, verify_timeout,
               out) -> None:
    """Search the most accurate subnet under each latency budget and write its config."""
    started = time.perf_counter()
    folder = Path(out)
    if verify and not label:
        raise click.UsageError("--verify measures on a device: give --db and --device")
    accuracy = AccuracyPredictor.load(acc_predictor)
    supernet = None
    if supernet_path:
        from ofa.nn.checkpoint import load_supernet  # torch only when weights are asked for
        supernet = load_supernet(supernet_path)
    if scenarios_file:
        jobs = []
        for name, item in _scenarios(scenarios_file):
            if "device" in item and not db:
                raise click.UsageError("scenarios with a 'device' need --db")
            jobs.append((name, dict(db=db, label=item.get("device"),
                                    kind=item.get("kind", "lut-ridge"), lut_dir=item.get("lut")),
                         sorted(set(float(b) for b in item["latency_ms"]))))
    else:
        if bool(label) == bool(lut_dir) or (label and not db):
            raise click.UsageError("give either --db and --device, or --lut (or --scenarios)")
        jobs = [("", dict(db=db, label=label, kind=kind, lut_dir=lut_dir),
                 _budgets(latency_ms, pareto))]
    table = []
    for name, source, budgets in jobs:
        latency = _latency_model(**source)
        rows = specialise(latency, accuracy, budgets, resolutions, max_macs, generations,
                          seed, folder / name, {"device": source["label"],
                                                "lut": source["lut_dir"]}, supernet)
        _write_front(rows, folder / name)
        table += [{"scenario": name, **row} for row in rows]
    for row in table:
        scenario = f"{row['scenario']:<16} " if scenarios_file else ""
        click.echo(f"{scenario}{row['budget_ms']:>8g} ms: top-1 {row['accuracy']:.4f} at "
                   f"{row['latency_ms']:.2f} ms, {row['macs'] / 1e6:.0f} M MACs, r={row['r']}")
    if verify:
        _verify(Store(db), label, folder, table, verify_timeout)
    if scenarios_file:
        with (folder / "scenarios.csv").open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(table[0]))
            writer.writeheader()
            writer.writerows(table)
    click.echo(f"{len(table)} scenario(s) in {time.perf_counter() - started:.2f} s; "
               f"results in {folder}")


def _verify(store: Store, label: str, folder: Path, rows: list[dict], timeout_s: float) -> None:
    """Measure each chosen subnet twice on `label` (a configs campaign) and print measured
    against predicted latency; writes verify.csv."""
    chosen = folder / "verify.jsonl"
    configs = {row["id"]: SubnetConfig.from_file(folder / row["scenario"] /
                                                 f"{row['budget_ms']:g}ms" / "subnet.json")
               for row in rows}
    chosen.write_text("\n".join(c.to_json() for c in configs.values()) + "\n")
    spec = CampaignSpec(name=f"verify {label} {uuid.uuid4().hex[:6]}",
                        targets=(Target(label=label),), workload="configs",
                        configs_file=str(chosen), reference_every=0)
    campaign = create_campaign(store, BlobStore(store), spec, start=True)
    click.echo(f"verifying on {label}: campaign {campaign}", err=True)
    deadline = time.monotonic() + timeout_s
    said: list[str] = []
    while (status := campaign_status(store, campaign))["finished"] < status["total"]:
        unserved = unserved_targets(store, status)
        for line in unserved if unserved != said else []:
            click.echo(f"verify: waiting: {line}", err=True)
        said = unserved
        if time.monotonic() > deadline:
            cancel_campaign(store, campaign)
            raise click.ClickException(
                f"verify: campaign {campaign} not finished after {timeout_s:g} s, so it was "
                f"cancelled ({render_progress(status)})" + (f"; {'; '.join(unserved)}"
                                                             if unserved else ""))
        time.sleep(0.5)
    measured = {m.config.id: m.median_ms for m in measured_subnets(store, label, [campaign])}
    with (folder / "verify.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["budget_ms", "id", "predicted_ms", "measured_ms", "error_pct"])
        for row in rows:
            got = measured.get(row["id"])
            error = 100 * (row["latency_ms"] - got) / got if got else float("nan")
            writer.writerow([row["budget_ms"], row["id"], f"{row['latency_ms']:.3f}",
                             f"{got:.3f}" if got else "", f"{error:.1f}"])
            click.echo(f"{row['budget_ms']:>8g} ms: predicted {row['latency_ms']:.2f} ms, "
                       + (f"measured {got:.2f} ms ({error:+.1f}%)" if got else "not measured"))
