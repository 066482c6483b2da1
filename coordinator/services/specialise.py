"""Specialisation: the most accurate subnet under each latency budget, from an accuracy
predictor and a latency predictor (a device's trained one, one built in memory, or any OFA
LUT folder such as Note10), written out per budget; and the check that measures the chosen
subnets on the device itself."""

from __future__ import annotations

import csv
import json
import math
import multiprocessing as mp
import re
import signal
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from coordinator.services.campaigns import (
    CampaignSpec,
    cancel_campaign,
    create_campaign,
    render_progress,
)
from coordinator.services.front_svg import accuracy_latency_front
from coordinator.services.predictor_data import measured_subnets, target_subnets
from coordinator.services.predictors import predictor_file
from coordinator.services.progress import OnProgress, quiet
from coordinator.services.targets import Target
from coordinator.services.waiting import CampaignTimeout, follow_campaign
from coordinator.state import BlobStore, Devices, Store
from ofa import space
from ofa.accuracy import AccuracyPredictor
from ofa.batch import ConfigBatch
from ofa.config import SubnetConfig
from ofa.front import Front, pareto_front
from ofa.latency_model import KINDS, BlockTable, LatencyPredictor, LutSum, load_predictor
from ofa.lut import LatencyTable
from ofa.plan import count_macs, count_params
from ofa.resources import MemoryModel, ResourceFigures, resource_table
from ofa.search import ImpossibleBudget, SearchSettings, fastest_configs

if TYPE_CHECKING:  # torch only when weights are asked for
    from ofa.nn.supernet import ElasticSupernet

__all__ = [
    "Chosen",
    "Scenario",
    "SpecialiseSettings",
    "Verified",
    "latency_budgets",
    "read_scenarios",
    "lut_folder_predictor",
    "latency_model",
    "allowed_resolutions",
    "specialise",
    "specialise_scenarios",
    "PeakMemory",
    "peak_memory",
    "write_front",
    "write_scenarios",
    "verify",
]

DEFAULT_KIND = "lut-ridge"


@dataclass(frozen=True)
class Chosen:
    """The subnet the search chose for one budget, with its predicted figures."""

    budget_ms: float
    config: SubnetConfig
    latency_ms: float
    accuracy: float
    macs: int
    generations: int
    peak_mb: float | None = None  # predicted peak memory, where a budget of it was set

    def row(self) -> dict[str, Any]:
        """The figures as one row of pareto.csv (and of summaries)."""
        peak = {} if self.peak_mb is None else {"peak_mb": self.peak_mb}
        return {
            "budget_ms": self.budget_ms,
            "latency_ms": self.latency_ms,
            "accuracy": self.accuracy,
            "macs": self.macs,
            "params": count_params(self.config),
            **peak,
            "r": self.config.r,
            "id": self.config.id,
        }


@dataclass(frozen=True)
class Scenario:
    """A latency model (a device's predictor of `kind` on `target`, or the LUT folder `lut`)
    and its budgets; `name` is its output subfolder ('' for a single run)."""

    name: str
    budgets: tuple[float, ...]
    device: str | None = None
    kind: str = DEFAULT_KIND
    lut: str | None = None
    target: str | None = None  # the device's measurement target (None: its only one)

    @property
    def source(self) -> dict[str, str | None]:
        """Where the latency model came from, as result.json records it."""
        return {"device": self.device, "lut": self.lut}

    @property
    def source_name(self) -> str:
        """Where the latency model came from, in words (the front's title)."""
        return f"device {self.device}, {self.kind} predictor" if self.device else f"LUT {self.lut}"


@dataclass(frozen=True)
class SpecialiseSettings:
    """The search's limits: resolutions (default: the latency model's, 160 and up), budgets
    of MACs and of parameters (in millions) and of the weights' size in MB (at the latency
    model's precision: 4, 2 or 1 byte a weight for fp32, fp16, int8), a budget of peak
    memory in MB (fit on the device's measurements: `ofa.resources.MemoryModel`),
    generations and seed."""

    resolutions: tuple[int, ...] | None = None
    max_macs: float | None = None
    generations: int = SearchSettings.generations
    seed: int = 0
    max_params: float | None = None
    max_size_mb: float | None = None
    max_peak_mb: float | None = None


BYTES_PER_WEIGHT = {"fp32": 4, "fp16": 2, "int8": 1}


@dataclass(frozen=True)
class Limit:
    """A budget of an additive resource: its option, the per-layer figure summed over the
    layer plan (MACs or parameters), the limit in that figure, and how to say it."""

    option: str
    figure: str  # "macs" or "params", a LayerSpec method
    limit: float
    per_unit: float  # figures per unit said
    unit: str


def limits(settings: SpecialiseSettings, latency: LatencyPredictor) -> list[Limit]:
    """The resource budgets `settings` sets."""
    precision = (Target.recorded(latency.provenance) or Target()).precision
    size = BYTES_PER_WEIGHT[precision]
    wanted = [
        (settings.max_macs, "max_macs", "macs", 1e6, "M MACs"),
        (settings.max_params, "max_params", "params", 1e6, "M parameters"),
        (settings.max_size_mb, "max_size_mb", "params", 1e6 / size, f"MB of {precision} weights"),
    ]
    return [
        Limit(option, figure, value * per_unit, per_unit, unit)
        for value, option, figure, per_unit, unit in wanted
        if value
    ]


@dataclass(frozen=True)
class PeakMemory:
    """A budget of peak memory on one device, with the model that predicts it."""

    limit_mb: float
    model: MemoryModel
    device: str


def feasibility(
    budgets: Sequence[Limit],
    allowed: Sequence[int],
    width: float,
    peak: PeakMemory | None = None,
    family: str = space.MOBILENET_V3.name,
) -> Callable[[ConfigBatch], np.ndarray] | None:
    """Whether each subnet of a batch is within every budget (None: no budget). A budget
    not even the smallest subnet meets is refused at once, naming it and the smallest
    reachable value (the smallest subnet at the lowest resolution is the least of each
    figure, and the fastest)."""
    if not budgets and peak is None:
        return None
    smallest = fastest_configs(allowed, width, family)
    tests: list[Callable[[ConfigBatch], np.ndarray]] = []
    for budget in budgets:
        table = resource_table(budget.figure, allowed, width, family)
        least = float(table.lut_sum(smallest).min())
        if least > budget.limit:
            raise ImpossibleBudget(
                f"{budget.option}: no subnet is within {budget.limit / budget.per_unit:g} "
                f"{budget.unit}; the smallest reachable is {least / budget.per_unit:.2f}"
            )
        tests.append(partial(_within, table.lut_sum, budget.limit))
    if peak is not None:
        low, high = peak.model.resolutions
        outside = sorted(r for r in allowed if not low <= r <= high)
        if outside:
            raise ValueError(
                f"max_peak_mb: the memory model of {peak.device} was fit on subnets measured "
                f"at {low}..{high} px and cannot say what {outside} cost; give --resolutions "
                f"within that range, or measure subnets at those resolutions"
            )
        figures = ResourceFigures.of(allowed, width, family)
        least = float(peak.model.predict(figures, smallest).min())
        if least > peak.limit_mb:
            raise ImpossibleBudget(
                f"max_peak_mb: no subnet is predicted within {peak.limit_mb:g} MB of peak "
                f"memory on {peak.device}; the smallest reachable is {least:.1f} MB (fit on "
                f"{peak.model.n} measured subnets, RMSE {peak.model.rmse_mb:.1f} MB)"
            )
        tests.append(partial(_within, partial(peak.model.predict, figures), peak.limit_mb))
    return lambda batch: np.logical_and.reduce([test(batch) for test in tests])


def _within(figure: Callable[[ConfigBatch], np.ndarray], limit: float, batch: ConfigBatch):
    return figure(batch) <= limit


def peak_memory(
    db: str | Path | None, scenario: Scenario, latency: LatencyPredictor, limit_mb: float
) -> PeakMemory:
    """The budget of peak memory on the scenario's device, with the model fit on what its
    agents recorded while measuring subnets of the latency model's width on its target."""
    if scenario.device is None:
        raise ValueError(
            f"max_peak_mb: peak memory is fit on a device's measurements, and "
            f"{scenario.lut} is a LUT folder: give --db and --device"
        )
    if db is None:
        raise ValueError(f"max_peak_mb: device {scenario.device}: its database is needed")
    recorded = Target.recorded(latency.provenance)
    try:
        data = target_subnets(
            Store(db), scenario.device, target=recorded.name if recorded else scenario.target
        )
        measured = [
            m
            for m in data.measured
            if m.peaks_mb and (m.config.family, m.config.w) == (latency.family, latency.width)
        ]
        model = MemoryModel.fit(
            [m.config for m in measured],
            [float(np.median(m.peaks_mb)) for m in measured],
            data.target.batch if data.target else 1,
        )
    except ValueError as exc:
        raise ValueError(f"max_peak_mb: device {scenario.device}: {exc}") from None
    return PeakMemory(limit_mb, model, scenario.device)


@dataclass(frozen=True)
class Verified:
    """A chosen subnet's predicted latency beside its median measured on the device."""

    budget_ms: float
    id: str
    predicted_ms: float
    measured_ms: float | None

    @property
    def error_pct(self) -> float:
        if not self.measured_ms:
            return float("nan")
        return 100 * (self.predicted_ms - self.measured_ms) / self.measured_ms


def latency_budgets(
    latency_ms: Sequence[float], pareto: tuple[float, float, int] | None = None
) -> list[float]:
    """The budgets given one by one plus, with `pareto` (MIN, MAX, COUNT), COUNT budgets
    evenly spaced from MIN to MAX ms (rounded to 3 decimals); sorted, each once."""
    budgets = list(latency_ms)
    if pareto:
        low, high, count = pareto
        budgets += np.linspace(low, high, count).round(3).tolist()
    return sorted(set(budgets))


def read_scenarios(path: str | Path) -> list[Scenario]:
    """The scenarios of a JSON list of `{"lut": DIR | "device": LABEL, "kind"?, "target"?,
    "name"?, "latency_ms": [..]}`; names are distinct folder names, so no two scenarios write into
    one folder."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, list) or not data:
        raise ValueError(f"{path}: expected a JSON list of scenarios")
    scenarios: dict[str, Scenario] = {}
    for i, item in enumerate(data):
        where = f"{path}: scenario {i}"
        if not isinstance(item, dict) or ("lut" in item) == ("device" in item):
            raise ValueError(f"{where}: give exactly one of 'lut' or 'device'")
        for key in ("lut", "device", "target"):
            if key in item and (not isinstance(item[key], str) or not item[key]):
                raise ValueError(
                    f"{where}: {key}: expected a non-empty string, got {item[key]!r:.40}"
                )
        kind = item.get("kind", DEFAULT_KIND)
        if kind not in KINDS:
            raise ValueError(f"{where}: kind: expected one of {', '.join(KINDS)}, got {kind!r:.40}")
        budgets = item.get("latency_ms")
        if (
            not isinstance(budgets, list)
            or not budgets
            or not all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and 0 < b < math.inf
                for b in budgets
            )
        ):
            raise ValueError(
                f"{where}: latency_ms: expected a list of positive budgets, got {budgets!r}"
            )
        name = item.get("name") or item.get("device") or Path(str(item["lut"])).name or str(i)
        if (
            not isinstance(name, str)
            or name in (".", "..")
            or "/" in name
            or "\\" in name
            or not name.isprintable()
            or len(name.encode()) > 255
        ):
            raise ValueError(f"{where}: name: expected a folder name, got {name!r:.80}")
        if name in scenarios:
            index = list(scenarios).index(name)
            raise ValueError(
                f"{where}: name: {name!r} is scenario {index}'s too, and both "
                "would write into one folder; give each a distinct 'name'"
            )
        scenarios[name] = Scenario(
            name,
            tuple(sorted({float(b) for b in budgets})),
            item.get("device"),
            kind,
            item.get("lut"),
            item.get("target"),
        )
    return list(scenarios.values())


def lut_folder_predictor(folder: str | Path) -> LutSum:
    """A `lut` predictor from a folder of OFA `{r}_lookup_table.yaml` files (e.g. Note10).
    Such a folder says nothing of the supernet it was measured on, so it is read off the
    first conv's key (its output channels, distinct for each MBConv supernet): the only
    source there is."""
    tables = LatencyTable.from_ofa_yaml(folder)
    r, table = next(iter(tables.entries.items()))
    first = next((key for key in table if key.startswith("Conv-")), "")
    match = re.search(r"output:\d+x\d+x(\d+)", first)
    if match is None:
        raise ValueError(
            f"lut: the r={r} table has no first conv key (Conv-...output:HxWxC) "
            "to read the supernet off"
        )
    channels = int(match.group(1))
    supernets = space.supernets_by_first_conv()
    if channels not in supernets:
        raise ValueError(
            f"lut: first conv has {channels} channels; no OFA MobileNetV3 or ProxylessNAS "
            f"supernet's has ({', '.join(map(str, sorted(supernets)))})"
        )
    family, width = supernets[channels]
    return LutSum.fit(BlockTable.from_lut(tables.means(), width, family.name))


def latency_model(db: str | Path | None, scenario: Scenario) -> LatencyPredictor:
    """The scenario's latency model: its LUT folder's, or the device's stored predictor."""
    if scenario.lut is not None:
        return lut_folder_predictor(scenario.lut)
    if scenario.device is None or db is None:
        raise ValueError("device: a scenario without a LUT folder needs a device and its database")
    option = "--target" if scenario.name == "" else "a 'target' field"
    return load_predictor(
        predictor_file(db, scenario.device, scenario.kind, scenario.target, option)
    )


def allowed_resolutions(
    latency: LatencyPredictor, resolutions: tuple[int, ...] | None
) -> tuple[int, ...]:
    """`resolutions`, or by default those of the latency model's table from 160 up (all of
    them when none is); each must be one the table has."""
    known = latency.resolutions.tolist()
    allowed = resolutions or tuple(r for r in known if r >= 160) or tuple(known)
    unknown = sorted(set(allowed) - set(known))
    if unknown:
        raise ValueError(
            f"resolutions: the latency model has no table for {unknown}; it knows {known}"
        )
    return allowed


def _write_subnet(supernet: ElasticSupernet, config: SubnetConfig, folder: Path) -> None:
    """The subnet's own weights (`{"state_dict": ...}` of the static network) and its ONNX."""
    from ofa.nn.checkpoint import save_checkpoint
    from ofa.nn.export import export_module

    net = supernet.get_active_subnet(config).eval()
    save_checkpoint(net, folder / "subnet.pth")
    (folder / "subnet.onnx").write_bytes(export_module(net, (1, 3, config.r, config.r)).onnx)


def specialise(
    latency: LatencyPredictor,
    accuracy: AccuracyPredictor,
    budgets: Sequence[float],
    folder: Path,
    source: dict[str, str | None],
    settings: SpecialiseSettings = SpecialiseSettings(),
    supernet: ElasticSupernet | None = None,
    progress: OnProgress = quiet,
    peak: PeakMemory | None = None,
) -> list[Chosen]:
    """Search the front over all budgets at once (`ofa.front`), refusing any budget below
    the fastest reachable latency before writing anything; write `front.csv` (every point
    of the front) and, per budget, `<budget>ms/subnet.json` and `result.json` (recording
    `source`, where the latency model came from) and, given a supernet, the subnet's weights
    and ONNX. `progress` hears of each budget searched."""
    wanted = space.FAMILIES[latency.family].supernet(latency.width)
    if supernet is not None and supernet.name != wanted:
        raise ValueError(
            f"supernet: the checkpoint is {supernet.name}, the latency model is for "
            f"subnets of {wanted}"
        )
    if latency.family != accuracy.family:
        raise ValueError(
            f"family: the latency model is for subnets of {wanted}, the accuracy predictor "
            f"for {accuracy.supernet}"
        )
    if latency.width != accuracy.width:
        raise ValueError(
            f"width: the latency model is for w{latency.width} subnets, the accuracy "
            f"predictor for w{accuracy.width}; measure the w{accuracy.width} space "
            "(campaign --width) or give an accuracy predictor for that width"
        )
    if (peak.limit_mb if peak else None) != settings.max_peak_mb:
        raise ValueError("max_peak_mb: give the device's PeakMemory (`peak_memory`) with it")
    allowed = allowed_resolutions(latency, settings.resolutions)
    feasible = feasibility(limits(settings, latency), allowed, latency.width, peak, latency.family)
    progress("searching", 0, len(budgets))
    done: list[float] = []

    def searched(budget: float) -> None:
        done.append(budget)
        progress("searching", len(done), len(budgets), f"{budget:g} ms")

    # The search multiplies matrices of ~100 x 400: BLAS's threads only wait on each other
    # there (2.5x slower on 2 cores, worse beside the other processes of --jobs).
    with threadpool_limits(1, user_api="blas"):
        front = pareto_front(
            accuracy.predict,
            latency.predict,
            budgets,
            allowed,
            latency.width,
            SearchSettings(generations=settings.generations, seed=settings.seed),
            feasible,
            searched,
            latency.family,
        )
    chosen = [_choose(front, budget, peak) for budget in budgets]  # refuses before writing
    for choice in chosen:
        target = folder / f"{choice.budget_ms:g}ms"
        target.mkdir(parents=True, exist_ok=True)
        (target / "subnet.json").write_text(choice.config.to_json() + "\n")
        (target / "result.json").write_text(
            json.dumps(
                {
                    **choice.row(),
                    "config": choice.config.to_dict(),
                    "generations": choice.generations,
                    "latency_model": {
                        **source,
                        "kind": latency.kind,
                        "provenance": latency.provenance,
                    },
                },
                indent=2,
            )
        )
        if supernet is not None:
            _write_subnet(supernet, choice.config, target)
    folder.mkdir(parents=True, exist_ok=True)
    _write_csv(folder / "front.csv", _front_rows(front))
    return chosen


def _choose(front: Front, budget: float, peak: PeakMemory | None = None) -> Chosen:
    """The front's subnet for `budget`, with its figures."""
    config, accuracy, latency_ms = front.best_within(budget)
    peak_mb = None
    if peak is not None:
        one = ConfigBatch.from_configs([config])
        figures = ResourceFigures.of([config.r], config.w, config.family)
        peak_mb = float(peak.model.predict(figures, one)[0])
    return Chosen(
        budget, config, latency_ms, accuracy, count_macs(config), front.generations, peak_mb
    )


def _front_rows(front: Front) -> list[dict[str, Any]]:
    """Every point of the front, fastest first: the choice for any budget in between."""
    return [
        {
            "latency_ms": float(front.latency_ms[i]),
            "accuracy": float(front.accuracy[i]),
            "macs": count_macs(config),
            "r": config.r,
            "id": config.id,
            "config": config.to_json(),
        }
        for i, config in enumerate(front.configs.config(i) for i in range(len(front)))
    ]


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_front(chosen: Sequence[Chosen], folder: Path, source: str) -> None:
    """pareto.csv and, for more than one budget, the accuracy-latency front as pareto.svg,
    titled with `source`, the latency model's origin."""
    rows = [choice.row() for choice in chosen]
    _write_csv(folder / "pareto.csv", rows)
    if len(rows) > 1:
        accuracy_latency_front(rows, folder / "pareto.svg", source)


def specialise_scenarios(
    db: str | Path | None,
    scenarios: Sequence[Scenario],
    accuracy: AccuracyPredictor,
    folder: Path,
    settings: SpecialiseSettings = SpecialiseSettings(),
    supernet: ElasticSupernet | None = None,
    progress: OnProgress = quiet,
    jobs: int = 1,
) -> list[tuple[Scenario, Chosen]]:
    """Each scenario specialised into its own subfolder of `folder`, with its front;
    `progress` hears of each scenario's search under the scenario's name. With `jobs` > 1,
    that many processes search scenarios side by side (see `_in_processes`); each
    scenario's answer is the same either way (its search is seeded)."""
    models = [latency_model(db, scenario) for scenario in scenarios]  # refused before any search
    peaks = [
        peak_memory(db, scenario, model, settings.max_peak_mb) if settings.max_peak_mb else None
        for scenario, model in zip(scenarios, models, strict=True)
    ]
    work = list(zip(scenarios, models, peaks, strict=True))
    search = partial(
        _specialise_scenario, accuracy=accuracy, folder=folder, settings=settings, supernet=supernet
    )
    if jobs > 1 and len(work) > 1 and supernet is None and "fork" in mp.get_all_start_methods():
        found = _in_processes(search, work, jobs, progress)
    else:
        found = [search(*item, progress=_named(progress, item[0].name)) for item in work]
    return [
        (scenario, choice)
        for (scenario, _, _), chosen in zip(work, found, strict=True)
        for choice in chosen
    ]


def _specialise_scenario(
    scenario: Scenario,
    model: LatencyPredictor,
    peak: PeakMemory | None,
    *,
    accuracy: AccuracyPredictor,
    folder: Path,
    settings: SpecialiseSettings,
    supernet: ElasticSupernet | None,
    progress: OnProgress = quiet,
) -> list[Chosen]:
    try:
        chosen = specialise(
            model,
            accuracy,
            scenario.budgets,
            folder / scenario.name,
            scenario.source,
            settings,
            supernet,
            progress,
            peak,
        )
    except ValueError as exc:  # ImpossibleBudget included: say whose budget
        if not scenario.name:
            raise
        raise type(exc)(f"scenario {scenario.name}: {exc}") from None
    write_front(chosen, folder / scenario.name, scenario.source_name)
    return chosen


def _in_processes(
    search: Callable[..., list[Chosen]],
    work: list[tuple[Scenario, LatencyPredictor, PeakMemory | None]],
    jobs: int,
    progress: OnProgress,
) -> list[list[Chosen]]:
    """`search` of each scenario in `jobs` forked processes (a search is numpy over small
    arrays: threads would wait on each other), in the scenarios' order. Forked, a worker
    starts in milliseconds with everything loaded; without fork (Windows, and macOS's
    default), scenarios are searched one after the other instead. The first error stops
    the rest."""
    context = mp.get_context("fork")
    pool = ProcessPoolExecutor(
        min(jobs, len(work)),
        mp_context=context,
        initializer=signal.signal,  # Ctrl-C is the parent's to handle: it stops the workers
        initargs=(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        futures = [pool.submit(search, *item) for item in work]
        progress("searching scenarios", 0, len(futures))
        for done, future in enumerate(as_completed(futures), 1):
            error = future.exception()
            if error is not None:
                raise error
            name = work[futures.index(future)][0].name
            progress("searching scenarios", done, len(futures), name)
        return [future.result() for future in futures]
    except BrokenProcessPool:
        raise OSError("a search process died (out of memory?); run again with --jobs 1") from None
    finally:  # after an error or Ctrl-C, no worker goes on with the queue
        pool.shutdown(wait=False, cancel_futures=True)
        for child in context.active_children():
            child.terminate()
        pool.shutdown(wait=True)


def _named(progress: OnProgress, name: str) -> OnProgress:
    """`progress` with its phases named after the scenario `name` ('' for a single run)."""

    def named(phase: str, done: int, total: int | None, detail: str = "") -> None:
        progress(f"{phase} {name}".strip(), done, total, detail)

    return named


def write_scenarios(table: Sequence[tuple[Scenario, Chosen]], folder: Path) -> None:
    """scenarios.csv: every scenario's choices in one table."""
    _write_csv(
        folder / "scenarios.csv",
        [{"scenario": scenario.name, **choice.row()} for scenario, choice in table],
    )


def verify(
    store: Store,
    label: str,
    chosen: Sequence[Chosen],
    folder: Path,
    timeout_s: float,
    say: Callable[[str], None],
    progress: OnProgress = quiet,
    target: Target | None = None,
) -> list[Verified]:
    """Measure each chosen subnet twice on `label` (a configs campaign) on `target` (the
    predictor's; default onnxruntime fp32 at batch 1 on the CPU) and write verify.csv of
    measured against predicted latency. After `timeout_s` without the campaign finishing
    it is cancelled and TimeoutError names it, its progress and the targets no agent serves.
    `say` gets the campaign and waiting lines; `progress` hears of the models built and of
    the jobs measured."""
    subnets = tuple(dict.fromkeys(choice.config.to_json() for choice in chosen))
    target = target or Target()
    spec = CampaignSpec(
        name=f"verify {label} {uuid.uuid4().hex[:6]}",
        targets=(Devices(label=label),),
        workload="configs",
        subnets=subnets,
        reference_every=0,
        options=target.bench_options(),
        precision=target.precision,
        batch=target.batch,
    )
    campaign = create_campaign(store, BlobStore(store), spec, progress, start=True)
    say(f"verifying on {label}, {target.name}: campaign {campaign}")
    said: list[str] = []
    try:
        for look in follow_campaign(store, campaign, interval_s=0.5, timeout_s=timeout_s):
            for line in look.unserved if look.unserved != said else []:
                say(f"verify: waiting: {line}")
            said = look.unserved
            progress(f"measuring on {label}", look.status["finished"], look.status["total"])
    except CampaignTimeout as timeout:
        cancel_campaign(store, campaign)
        unserved = timeout.progress.unserved
        raise TimeoutError(
            f"verify: campaign {campaign} not finished after {timeout_s:g} s, so it was "
            f"cancelled ({render_progress(timeout.progress.status)})"
            + (f"; {'; '.join(unserved)}" if unserved else "")
        ) from None
    measured = {m.config.id: m.median_ms for m in measured_subnets(store, label, [campaign])}
    verified = [
        Verified(
            choice.budget_ms, choice.config.id, choice.latency_ms, measured.get(choice.config.id)
        )
        for choice in chosen
    ]
    with (folder / "verify.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["budget_ms", "id", "predicted_ms", "measured_ms", "error_pct"])
        for row in verified:
            writer.writerow(
                [
                    row.budget_ms,
                    row.id,
                    f"{row.predicted_ms:.3f}",
                    f"{row.measured_ms:.3f}" if row.measured_ms else "",
                    f"{row.error_pct:.1f}",
                ]
            )
    return verified
