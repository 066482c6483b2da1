"""Specialisation of OFA-ResNet50 with the authors' ResNet50 accuracy predictor
(`ofa.resnet_search`): latency budgets from a ResNet50 LUT folder (a `--family resnet50`
campaign's export), or a MACs budget alone, as OFA's own ResNet50 search has it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coordinator.services.progress import OnProgress, quiet
from ofa.lut import LatencyTable
from ofa.plan import count_macs, count_params
from ofa.resnet import PREDICTOR_RESOLUTIONS, ResNetAccuracyPredictor, ResNetConfig
from ofa.resnet_search import resnet_search
from ofa.search import SearchSettings

__all__ = ["ResNetChoice", "specialise_resnet"]


@dataclass(frozen=True)
class ResNetChoice:
    """The subnet chosen for one budget (ms with a LUT, else millions of MACs)."""

    budget: float
    unit: str
    config: ResNetConfig
    accuracy: float
    latency_ms: float | None

    def row(self) -> dict[str, Any]:
        return {
            "budget": self.budget,
            "unit": self.unit,
            "latency_ms": self.latency_ms,
            "accuracy": self.accuracy,
            "macs": count_macs(self.config),
            "params": count_params(self.config),
            "r": self.config.r,
            "id": self.config.id,
        }


def specialise_resnet(
    accuracy: ResNetAccuracyPredictor,
    lut: str | Path | None,
    latency_ms: Sequence[float],
    max_macs: float | None,
    resolutions: Sequence[int] | None,
    settings: SearchSettings,
    folder: Path,
    progress: OnProgress = quiet,
) -> list[ResNetChoice]:
    """Search each budget (refusing an impossible one before writing anything), then write
    `<budget><unit>/subnet.json` and `result.json` per budget."""
    allowed = set(PREDICTOR_RESOLUTIONS) & set(resolutions or PREDICTOR_RESOLUTIONS)
    table = LatencyTable.from_ofa_yaml(lut) if lut is not None else None
    if table is not None:
        allowed &= set(table.resolutions)
        for r in sorted(allowed):
            missing = table.missing_keys(ResNetConfig.smallest(r))
            if missing:
                raise ValueError(f"lut: {lut} is no ResNet50 table at r={r} (no {missing[0]})")
    if not allowed:
        raise ValueError(
            f"resolutions: none of those asked for is in the ResNet50 accuracy predictor's "
            f"({', '.join(map(str, PREDICTOR_RESOLUTIONS))})"
            + (f" and the LUT's ({', '.join(map(str, table.resolutions))})" if table else "")
        )
    macs_ok: Callable[[ResNetConfig], bool] = (
        (lambda c: count_macs(c) <= max_macs * 1e6) if max_macs is not None else (lambda c: True)
    )
    if table is not None:
        budgets, unit = list(latency_ms), "ms"
        predict = table.predict_ms

        def cost(config: ResNetConfig) -> float:
            return predict(config) if macs_ok(config) else math.inf
    elif max_macs is not None and not latency_ms:
        budgets, unit = [max_macs], "M MACs"

        def cost(config: ResNetConfig) -> float:
            return count_macs(config) / 1e6
    else:
        raise ValueError("latency_ms: a ResNet50 latency budget needs a ResNet50 LUT (--lut)")
    chosen = []
    progress("searching", 0, len(budgets))
    for i, budget in enumerate(budgets, 1):
        found = resnet_search(accuracy.predict, cost, budget, sorted(allowed), settings, unit)
        latency = table.predict_ms(found.config) if table is not None else None
        chosen.append(ResNetChoice(budget, unit, found.config, found.accuracy, latency))
        progress("searching", i, len(budgets), f"{budget:g} {unit}")
    for choice in chosen:
        target = folder / f"{choice.budget:g}{unit.replace(' ', '')}"
        target.mkdir(parents=True, exist_ok=True)
        (target / "subnet.json").write_text(choice.config.to_json() + "\n")
        source = {"lut": str(lut)} if lut is not None else {"macs": True}
        result = {**choice.row(), "config": choice.config.to_dict(), "latency_model": source}
        (target / "result.json").write_text(json.dumps(result, indent=2))
    return chosen
