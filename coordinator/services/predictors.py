"""A device's latency predictors: trained from its LUT and the subnets measured on it,
stored in the fleet's predictors folder one per (measurement target, kind), and scored on the
held-out subnets beside the noise floor (how well one measurement of them predicts the
other)."""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from coordinator.services.lut_export import collect_lut
from coordinator.services.predictor_data import (
    Measured,
    device_lut,
    measured_subnets,
    predictor_path,
    predictors_folder,
    split,
    target_subnets,
)
from coordinator.services.progress import OnProgress, quiet
from coordinator.services.targets import Target
from coordinator.state import Devices, Store
from ofa.latency_model import (
    KINDS,
    BlockTable,
    LatencyPredictor,
    Structure,
    Transfer,
    fit_predictor,
    load_predictor,
)
from ofa.metrics import regression_metrics

__all__ = [
    "TrainedPredictor",
    "evaluate",
    "noise_floor",
    "noise_warnings",
    "train_predictor",
    "held_out_subnets",
    "of_supernet",
    "predictors_target",
    "device_predictors",
    "plot_predictors",
    "trained_kinds",
    "stored_predictors",
    "trained_target",
    "latest_trained_target",
    "predictor_file",
    "scoring_target",
    "predictors_version",
]


@dataclass(frozen=True)
class TrainedPredictor:
    """A stored predictor, where it is, and how many subnets it was fitted on (0: its LUT)."""

    model: LatencyPredictor
    path: Path
    training_subnets: int


Fitted = tuple[LatencyPredictor, dict, list[Measured]]  # model, its origin, its subnets


def of_supernet(measured: Sequence[Measured], model: LatencyPredictor) -> list[Measured]:
    """The subnets of the model's supernet: a device may be measured on several (e.g. a
    MobileNetV3 and a ProxylessNAS campaign), and a predictor knows one."""
    return [m for m in measured if (m.config.family, m.config.w) == (model.family, model.width)]


def evaluate(model: LatencyPredictor, held_out: Sequence[Measured]) -> dict[str, float]:
    """Metrics against each repeat of the held-out subnets in turn, averaged: the same
    footing as the noise floor, which compares one repeat with the other."""
    predicted = model.predict([m.config for m in held_out])
    repeats = min(len(m.medians_ms) for m in held_out)
    runs = [
        regression_metrics(predicted, np.array([m.medians_ms[i] for m in held_out]))
        for i in range(repeats)
    ]
    return _averaged(runs)


def _averaged(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """The runs' metrics averaged; `n`, the same in every run, stays a count."""
    return {key: float(np.mean([run[key] for run in runs])) for key in runs[0]} | {
        "n": runs[0]["n"]
    }


def noise_floor(held_out: Sequence[Measured]) -> dict[str, float] | None:
    """The same metrics between two independent measurements of the held-out subnets."""
    twice = [m for m in held_out if len(m.medians_ms) >= 2]
    if len(twice) < 2:
        return None
    first, second = (np.array([m.medians_ms[i] for m in twice]) for i in (0, 1))
    return _averaged([regression_metrics(first, second), regression_metrics(second, first)])


# Beyond these, a predictor's held-out figures say more about the device than the predictor.
NOISY_FLOOR_RMSE_PCT = 20.0
UNRANKED_TAU = 0.3


def noise_warnings(rows: dict[str, dict | None], floor: str) -> list[str]:
    """One line per figure that cannot be taken at face value: a noise floor so high (or
    so unordered) that no predictor can be judged against it, and a predictor whose rank
    order of the held-out subnets is no better than chance."""
    lines = []
    noise = rows.get(floor)
    if noise and noise["rmse_pct"] > NOISY_FLOOR_RMSE_PCT:
        lines.append(
            f"warning: two measurements of the same subnets differ by {noise['rmse_pct']:.1f}% "
            "RMSE (the noise floor): errors below that say nothing about a predictor; "
            "re-measure on a quieter device"
        )
    if noise and noise["kendall_tau"] < UNRANKED_TAU:
        lines.append(
            f"warning: two measurements rank the subnets alike only by Kendall tau "
            f"{noise['kendall_tau']:.2f}: the device did not hold still"
        )
    for name, metrics in rows.items():
        if name != floor and metrics and metrics["kendall_tau"] <= 0:
            lines.append(
                f"warning: {name} ranks the held-out subnets no better than chance "
                f"(Kendall tau {metrics['kendall_tau']:.2f})"
            )
    return lines


def train_predictor(
    store: Store,
    db: str | Path,
    label: str,
    kind: str,
    *,
    campaigns: Sequence[str] = (),
    lut_campaign: str | None = None,
    source_device: str | None = None,
    source_kind: str = "lut-ridge",
    source_target: str | None = None,
    k: int | None = None,
    seed: int = 0,
    target: str | None = None,
    progress: OnProgress = quiet,
) -> TrainedPredictor:
    """Fit a `kind` predictor of device `label` on its training subnets (of `campaigns`,
    default all) and store it beside the database, with its provenance and, when subnets
    are held out, its metrics. `transfer` adapts `source_device`'s `source_kind` predictor
    from K of them (seeded; its predictor on `source_target`, where it has several);
    `structure` needs no LUT; the other kinds are made from the
    device's LUT (of `lut_campaign`, default all). `progress` hears of each phase (reading
    the measurements and fitting take seconds to minutes on a large database). Subnets and
    LUT are of one measurement target: `target`, where the device was measured on several."""
    progress("reading the measured subnets", 0, None)
    data = target_subnets(store, label, list(campaigns) or None, target)
    of = data.target
    training, held_out = split(data.measured)
    on = of.name if of is not None else target  # a LUT-only device: the LUT's target
    if kind == Transfer.kind:
        progress(f"fitting {kind}", 0, None)
        model, origin, chosen = _transfer(
            db, training, source_device, source_kind, source_target, k, seed
        )
    elif kind == Structure.kind:
        progress(f"fitting {kind}", 0, None)
        model, origin, chosen = _structure(training, seed)
    else:
        model, origin, chosen = _from_lut(
            store, label, kind, training, lut_campaign, on, seed, progress
        )
    held_out = of_supernet(held_out, model)
    model = model.with_details(
        provenance={
            **origin,
            "device": label,
            "target": of.to_dict() if of is not None else origin.get("target"),
            "training_subnets": len(chosen),
            "subnet_campaigns": data.campaigns,
            "imports": data.imports,
            # disturbed measurements behind its subnets (re-measured; none of them used)
            "subnets_disturbed_remeasured": sum(
                item.disturbed
                for item in store.item_jobs(Devices(label=label), "subnet", data.campaigns).values()
            )
            if data.campaigns
            else 0,
        },
        metrics={"held_out": evaluate(model, held_out), "noise_floor": noise_floor(held_out)}
        if held_out
        else {},
    )
    recorded = Target.recorded(model.provenance)
    path = predictor_path(db, label, kind, recorded.name if recorded else Target().name)
    model.save(path)
    return TrainedPredictor(model, path, len(chosen))


def _transfer(
    db: str | Path,
    training: list[Measured],
    source_device: str | None,
    source_kind: str,
    source_target: str | None,
    k: int | None,
    seed: int,
) -> Fitted:
    if not source_device:
        raise ValueError(
            "source_device: transfer adapts another device's predictor; give --source-device"
        )
    source_target, _ = trained_target(db, source_device, source_target, "--source-target")
    source = load_predictor(predictor_file(db, source_device, source_kind, source_target))
    training = of_supernet(training, source)
    if not training:
        raise ValueError(
            f"subnets: none measured of the source predictor's supernet (w{source.width} "
            f"{source.family}); measure some first"
        )
    chosen = random.Random(seed).sample(training, min(k or len(training), len(training)))
    model = Transfer.fit(source, [m.config for m in chosen], [m.median_ms for m in chosen])
    return (
        model,
        {
            "source_device": source_device,
            "source_kind": source_kind,
            "source_target": source_target,
            "k": len(chosen),
            "fitted_on": sorted(m.config.id for m in chosen),
        },
        chosen,
    )


def _structure(training: list[Measured], seed: int) -> Fitted:
    """From the training subnets alone, all of one supernet."""
    supernets = sorted({m.config.supernet for m in training})
    if len(supernets) > 1:
        raise ValueError(
            f"subnets: the training subnets span supernets {', '.join(supernets)}; train on "
            "one (give --campaign, or import each supernet's measurements under a device "
            "label of its own)"
        )
    model = Structure.fit([m.config for m in training], [m.median_ms for m in training], seed=seed)
    return model, {"lut": None}, training


def _from_lut(
    store: Store,
    label: str,
    kind: str,
    training: list[Measured],
    lut_campaign: str | None,
    target: str | None,
    seed: int,
    progress: OnProgress,
) -> Fitted:
    """The device's LUT on `target` and, for the learned kinds, its training subnets of the
    LUT's width."""
    progress("collecting the LUT", 0, None)
    lut, family, width, provenance = device_lut(
        collect_lut(store, label, lut_campaign, target=target)
    )
    same = [m for m in training if (m.config.family, m.config.w) == (family, width)]
    chosen = same if kind != "lut" else []
    progress(f"fitting {kind}", 0, None)
    model = fit_predictor(
        kind,
        BlockTable.from_lut(lut, width, family),
        [m.config for m in chosen] or None,
        [m.median_ms for m in chosen] if chosen else None,
        seed=seed,
    )
    return model, provenance, chosen


def held_out_subnets(store: Store, label: str, target: str | None = None) -> list[Measured]:
    """The device's held-out subnets (of one target); at least two, or metrics would mean
    nothing."""
    _, held_out = split(measured_subnets(store, label, target=target))
    if len(held_out) < 2:
        raise ValueError(
            f"device: {label!r} has {len(held_out)} held-out subnets measured end "
            "to end; run a random campaign on it"
        )
    return held_out


def stored_predictors(db: str | Path, label: str) -> dict[str, dict[str, Path]]:
    """{target name: {kind: file}} of the device's stored predictors. One stored before
    predictors were kept per target (`<label>/<kind>.json`) counts under the target it
    records, unless that has its own; one that records none (or cannot be read: using it
    says why), under fp32 at batch 1 on the CPU."""
    return _with_unrecorded(*_scan(db, label))


def _with_unrecorded(
    found: dict[str, dict[str, Path]], unrecorded: dict[str, Path]
) -> dict[str, dict[str, Path]]:
    """`found`, with the old files that record no target under the default target."""
    for kind, path in unrecorded.items():
        found.setdefault(Target().name, {}).setdefault(kind, path)
    return found


def _scan(db: str | Path, label: str) -> tuple[dict[str, dict[str, Path]], dict[str, Path]]:
    """The device's predictors by target, and its old files that record no target."""
    folder = predictors_folder(db) / label
    found: dict[str, dict[str, Path]] = {}
    unrecorded: dict[str, Path] = {}
    if not folder.is_dir():
        return found, unrecorded
    for sub in sorted(path for path in folder.iterdir() if path.is_dir()):
        kinds = {kind: sub / f"{kind}.json" for kind in KINDS if (sub / f"{kind}.json").is_file()}
        if kinds:
            found[sub.name] = kinds
    for kind in KINDS:
        old = folder / f"{kind}.json"
        if old.is_file():
            name = _recorded_target(str(old), old.stat().st_mtime_ns)
            if name is None:
                unrecorded[kind] = old
            else:
                found.setdefault(name, {}).setdefault(kind, old)
    return found, unrecorded


@functools.lru_cache(maxsize=256)
def _recorded_target(path: str, mtime_ns: int) -> str | None:
    """The target name an old predictor file records (None: none, or unreadable), read once
    per version of the file: the status page asks at every refresh."""
    try:
        recorded = Target.recorded(json.loads(Path(path).read_text()).get("provenance"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return recorded.name if recorded else None


def trained_target(
    db: str | Path, label: str, target: str | None, option: str = "--target"
) -> tuple[str, dict[str, Path]]:
    """The target whose predictors to use, and their files: `target`, or the only one the
    device has predictors on; old files that record no target serve any target asked for
    that has none of its own. ValueError naming what there is, and `option` (how the
    caller names a target), otherwise."""
    found, unrecorded = _scan(db, label)
    if target is not None and target not in found and unrecorded:
        return target, unrecorded
    stored = _with_unrecorded(found, unrecorded)
    if not stored:
        raise ValueError(
            f"device: no predictor trained for {label!r} "
            f"(ofa-coord predictor train --device {label})"
        )
    if target is None:
        if len(stored) > 1:
            raise ValueError(
                f"target: {label!r} has predictors on {', '.join(stored)}; name one with {option}"
            )
        target = next(iter(stored))
    if target not in stored:
        raise ValueError(
            f"target: {label!r} has no predictor on {target}; it has some on {', '.join(stored)}"
        )
    return target, stored[target]


def scoring_target(models: Iterable[LatencyPredictor], target: str) -> str | None:
    """The target whose held-out subnets score these predictors: theirs, or None (the
    device's only one) for old predictors that record none."""
    return target if any(Target.recorded(m.provenance) for m in models) else None


def predictors_version(db: str | Path, label: str) -> int:
    """When the device's predictors last changed (0: it has none), in milliseconds."""
    files = [path for kinds in stored_predictors(db, label).values() for path in kinds.values()]
    return max((path.stat().st_mtime_ns // 1_000_000 for path in files), default=0)


def latest_trained_target(db: str | Path, label: str) -> str | None:
    """The target of the device's most recently trained predictor (None: none trained)."""
    stored = stored_predictors(db, label)
    return max(
        stored,
        key=lambda name: max(path.stat().st_mtime for path in stored[name].values()),
        default=None,
    )


def predictor_file(
    db: str | Path, label: str, kind: str, target: str | None = None, option: str = "--target"
) -> Path:
    """The file of the device's `kind` predictor on `target` (see `trained_target`)."""
    return _of_kind(label, kind, *trained_target(db, label, target, option))


def _of_kind(label: str, kind: str, target: str, paths: dict[str, Path]) -> Path:
    if kind not in paths:
        raise ValueError(
            f"kind: no {kind} predictor for {label!r} on {target} (it has "
            f"{', '.join(paths)}; ofa-coord predictor train --device {label} --target {target} "
            f"--kind {kind})"
        )
    return paths[kind]


def trained_kinds(db: str | Path, label: str, target: str | None = None) -> tuple[str, ...]:
    """The kinds of predictor stored for the device on `target` (see `trained_target`)."""
    return tuple(trained_target(db, label, target)[1])


def device_predictors(
    db: str | Path, label: str, kinds: Sequence[str] = (), target: str | None = None
) -> dict[str, LatencyPredictor]:
    """The device's predictors of `kinds` (default: every kind trained for it) on `target`
    (see `trained_target`)."""
    target, paths = trained_target(db, label, target)  # one look at the folder for all
    return {kind: load_predictor(_of_kind(label, kind, target, paths)) for kind in kinds or paths}


def predictors_target(models: Iterable[LatencyPredictor]) -> str | None:
    """The name of the measurement target a device's predictors were trained on (None for
    predictors from before targets were recorded); ValueError if they disagree."""
    names = {t.name if (t := Target.recorded(m.provenance)) else None for m in models}
    if len(names) > 1:
        raise ValueError(
            f"target: the device's predictors were trained on different targets "
            f"({', '.join(sorted(str(n) for n in names))}); train them again on one"
        )
    return names.pop() if names else None


def plot_predictors(
    label: str, held_out: Sequence[Measured], models: dict[str, LatencyPredictor], path: Path
) -> Path:
    """Predicted against measured latency of the held-out subnets, one series per model."""
    from coordinator.services.plots import predicted_vs_measured  # matplotlib: when drawing

    series = {}
    for kind, model in models.items():
        own = of_supernet(held_out, model)
        if own:  # a predictor of a supernet none of them is of has nothing to draw
            series[kind] = (
                model.predict([m.config for m in own]),
                np.array([m.median_ms for m in own]),
            )
    if not series:
        raise ValueError(f"device: no held-out subnet of its predictors' supernets ({label})")
    return predicted_vs_measured(series, path, f"{label}: {len(held_out)} held-out subnets")
