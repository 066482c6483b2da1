"""The whole fleet specialised in one go: per device label, its budgets searched with its
best latency predictor, and a deployment manifest of the picks.

`ofa-coord specialize --fleet budgets.json` reads `{"pixel7": [12, 20], "rpi4": {"latency_ms":
[40], "kind": "lut-ridge", "target": "onnxruntime-cpu-int8-b1"}}`: a label's budgets, and
optionally the predictor kind and the measurement target to use (where the device has
predictors on several).
Without a kind, the device's best trained predictor is used: the lowest held-out RMSE % its
metrics record (a predictor trained with no held-out subnets ranks last). The manifest
(`manifest.json`) lists each pick with its device, target, budget, subnet, predicted top-1
and latency, the predictor and its held-out error, the ONNX digest where a supernet gave the
weights, and, verified, what the device measured.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from pathlib import Path

from agent import strict_json
from coordinator.services.predictors import predictor_file, trained_target
from coordinator.services.specialise import Chosen, Scenario, Verified
from coordinator.services.targets import Target
from coordinator.state import LABEL
from ofa.config import show
from ofa.jsonfile import read
from ofa.latency_model import KINDS, load_predictor

__all__ = ["read_fleet_budgets", "best_kind", "fleet_scenarios", "write_manifest", "MANIFEST"]

MANIFEST = "manifest.json"
MAX_BUDGETS = 1000  # per device, as --pareto allows


FleetBudgets = dict[str, tuple[tuple[float, ...], str | None, str | None]]


def read_fleet_budgets(path: str | Path) -> FleetBudgets:
    """Each label's budgets (sorted, distinct), the kind asked for (None: its best) and the
    target (None: its only one); ValueError naming the label and field for anything else."""
    data = read(path)
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: expected an object of device label -> budgets")
    fleet = {}
    for label, entry in data.items():
        where = f"{path}: {label}"
        if not LABEL.fullmatch(label):
            raise ValueError(f"{path}: expected device labels as keys, got {show(label)}")
        kind = target = None
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - {"latency_ms", "kind", "target"})
            if unknown:
                raise ValueError(f"{where}: unknown field(s) {', '.join(unknown)}")
            kind = entry.get("kind")
            if kind is not None and kind not in KINDS:
                raise ValueError(
                    f"{where}: kind: expected one of {', '.join(KINDS)}, got {show(kind)}"
                )
            target = entry.get("target")
            if target is not None and (not isinstance(target, str) or not target):
                raise ValueError(f"{where}: target: expected a target name, got {show(target)}")
            entry = entry.get("latency_ms")
        if (
            not isinstance(entry, list)
            or not 0 < len(entry) <= MAX_BUDGETS
            or not all(
                isinstance(b, (int, float)) and not isinstance(b, bool) and 0 < b < math.inf
                for b in entry
            )
        ):
            raise ValueError(
                f"{where}: latency_ms: expected a list of 1-{MAX_BUDGETS} positive budgets "
                f"(ms), got {show(entry)}"
            )
        fleet[label] = (tuple(sorted({float(b) for b in entry})), kind, target)
    return fleet


def _held_out_rmse(path: Path) -> float:
    metrics = load_predictor(path).metrics.get("held_out") or {}
    return float(metrics.get("rmse_pct", math.inf))


def best_kind(db: str | Path, label: str, target: str | None = None) -> str:
    """The device's trained predictor kind (on `target`) with the lowest held-out RMSE %."""
    _, paths = trained_target(db, label, target, "a 'target' field")
    return min(paths, key=lambda kind: (_held_out_rmse(paths[kind]), KINDS.index(kind)))


def fleet_scenarios(db: str | Path, fleet: FleetBudgets) -> list[Scenario]:
    """One scenario per device, with its predictor kind (its best, unless asked)."""
    return [
        Scenario(label, budgets, label, kind or best_kind(db, label, target), target=target)
        for label, (budgets, kind, target) in fleet.items()
    ]


def write_manifest(
    db: str | Path,
    folder: Path,
    picks: Sequence[tuple[Scenario, Chosen]],
    verified: dict[tuple[str, float], Verified],
    accuracy_predictor: str,
) -> Path:
    """manifest.json: every pick, with what made it and, where verified, what was measured."""
    predictors = {  # each device's once, not once per budget
        scenario.name: load_predictor(
            predictor_file(db, str(scenario.device), scenario.kind, scenario.target)
        )
        for scenario in dict.fromkeys(scenario for scenario, _ in picks)
    }
    rows = []
    for scenario, choice in picks:
        label = str(scenario.device)
        predictor = predictors[scenario.name]
        onnx = folder / scenario.name / f"{choice.budget_ms:g}ms" / "subnet.onnx"
        checked = verified.get((label, choice.budget_ms))
        rows.append(
            {
                "device": label,
                "target": (Target.recorded(predictor.provenance) or Target()).to_dict(),
                **choice.row(),
                "config": choice.config.to_dict(),
                "predictor": {
                    "kind": scenario.kind,
                    "held_out": predictor.metrics.get("held_out"),
                },
                "onnx_sha256": hashlib.sha256(onnx.read_bytes()).hexdigest()
                if onnx.is_file()
                else None,
                "measured_ms": checked.measured_ms if checked else None,
                "error_pct": checked.error_pct if checked and checked.measured_ms else None,
            }
        )
    path = folder / MANIFEST
    manifest = {
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "accuracy_predictor": accuracy_predictor,
        "picks": rows,
    }
    path.write_text(strict_json.dumps(manifest, indent=2) + "\n")  # a NaN metric as null
    return path
