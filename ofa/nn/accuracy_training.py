"""Training our own accuracy predictor from (config, accuracy) pairs, with OFA's recipe:
the tutorial MLP, Adam (lr 1e-3, weight decay 1e-4), batches of 500, the output bias started
at the mean accuracy. Data is JSONL (`{"config": {...}, "accuracy": 0.75}` per line) or CSV
(columns `config`, holding the config's JSON, and `accuracy`); accuracy is a fraction.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ofa import space
from ofa.accuracy import AccuracyPredictor, ResolutionEncoding, features
from ofa.batch import ConfigBatch
from ofa.config import SubnetConfig
from ofa.metrics import kendall_tau

__all__ = [
    "AccuracyPairs",
    "read_accuracy_pairs",
    "TrainSettings",
    "fit_accuracy_predictor",
    "held_out",
    "rmse",
    "evaluate",
]


@dataclass(frozen=True)
class AccuracyPairs:
    configs: tuple[SubnetConfig, ...]
    accuracy: np.ndarray

    def subset(self, mask: np.ndarray) -> AccuracyPairs:
        return AccuracyPairs(
            tuple(c for c, keep in zip(self.configs, mask, strict=True) if keep),
            self.accuracy[mask],
        )


def _pair(where: str, config: Any, accuracy: Any) -> tuple[SubnetConfig, float]:
    if isinstance(config, str):
        try:
            config = json.loads(config)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{where}: config: not valid JSON ({exc})") from None
    try:
        parsed = SubnetConfig.from_dict(config)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: config: {exc}") from None
    try:
        value = float(accuracy)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: accuracy: expected a number, got {accuracy!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{where}: accuracy: expected a fraction in 0..1, got {value}")
    return parsed, value


def read_accuracy_pairs(path: str | Path) -> AccuracyPairs:
    """Pairs from `.csv` or JSONL (any other suffix); errors name the line and the field."""
    path = Path(path)
    rows: list[tuple[SubnetConfig, float]] = []
    with path.open(newline="") as f:
        if path.suffix == ".csv":
            reader = csv.DictReader(f)
            missing = {"config", "accuracy"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(
                    f"{path}: missing column(s) {', '.join(sorted(missing))}; "
                    "expected 'config' (JSON) and 'accuracy'"
                )
            rows = [
                _pair(f"{path}:{i}", row["config"], row["accuracy"])
                for i, row in enumerate(reader, 2)
            ]
        else:
            for i, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{i}: not valid JSON ({exc})") from None
                if not isinstance(item, dict) or "config" not in item or "accuracy" not in item:
                    raise ValueError(f"{path}:{i}: expected an object with 'config' and 'accuracy'")
                rows.append(_pair(f"{path}:{i}", item["config"], item["accuracy"]))
    if not rows:
        raise ValueError(f"{path}: no (config, accuracy) pairs")
    supernets = {config.supernet for config, _ in rows}
    if len(supernets) > 1:
        field = "family" if len({config.family for config, _ in rows}) > 1 else "w"
        raise ValueError(f"{path}: {field}: the pairs mix supernets {', '.join(sorted(supernets))}")
    return AccuracyPairs(tuple(c for c, _ in rows), np.array([a for _, a in rows]))


def held_out(pairs: AccuracyPairs, every: int = 5) -> np.ndarray:
    """Mask of the held-out pairs: one architecture in `every`, chosen by its id at a fixed
    resolution, so one subnet evaluated twice or at several resolutions never sits on both
    sides."""
    return np.array(
        [int(c.replace(r=space.MAX_RESOLUTION).id, 16) % every == 0 for c in pairs.configs]
    )


def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    return float(np.sqrt(np.mean((predicted - actual) ** 2)))


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 300
    batch_size: int = 500
    lr: float = 1e-3
    weight_decay: float = 1e-4
    hidden: int = 400
    seed: int = 0


def fit_accuracy_predictor(
    pairs: AccuracyPairs,
    settings: TrainSettings = TrainSettings(),
    progress: Callable[[int, float], None] | None = None,
    encoding: ResolutionEncoding | None = None,
) -> AccuracyPredictor:
    """Train the tutorial MLP on `pairs`; `progress(epoch, train_rmse)` after each epoch.
    `encoding` defaults to one for the pairs' resolutions; give one built from all the data
    when some resolutions occur only in a held-out part."""
    import torch  # training only; predicting needs numpy alone
    from torch import nn

    torch.manual_seed(settings.seed)
    batch = ConfigBatch.from_configs(pairs.configs)
    encoding = encoding or ResolutionEncoding.for_resolutions(batch.r)
    x = torch.from_numpy(features(batch, encoding))
    y = torch.from_numpy(pairs.accuracy.astype(np.float32))
    h = settings.hidden
    head = nn.Linear(h, 1)
    model = nn.Sequential(
        nn.Linear(x.shape[1], h),
        nn.ReLU(),
        nn.Linear(h, h),
        nn.ReLU(),
        nn.Linear(h, h),
        nn.ReLU(),
        head,
    )
    with torch.no_grad():
        head.bias.fill_(float(y.mean()))
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    generator = torch.Generator().manual_seed(settings.seed)
    for epoch in range(1, settings.epochs + 1):
        order = torch.randperm(len(y), generator=generator)
        squared = 0.0
        for start in range(0, len(y), settings.batch_size):
            index = order[start : start + settings.batch_size]
            loss = nn.functional.mse_loss(model(x[index])[:, 0], y[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            squared += loss.item() * len(index)
        if progress:
            progress(epoch, (squared / len(y)) ** 0.5)
    layers = [m for m in model if isinstance(m, nn.Linear)]
    return AccuracyPredictor(
        tuple(m.weight.detach().numpy() for m in layers),
        tuple(m.bias.detach().numpy() for m in layers),
        batch.w,
        encoding,
        batch.family,
    )


def evaluate(predictor: AccuracyPredictor, pairs: AccuracyPairs) -> dict[str, float]:
    """RMSE in top-1 points, next to that of always answering the mean, and Kendall's tau
    (what a search needs is the ranking)."""
    predicted = predictor.predict(pairs.configs)
    constant = np.full_like(pairs.accuracy, pairs.accuracy.mean())
    return {
        "n": len(pairs.configs),
        "rmse_points": 100 * rmse(predicted, pairs.accuracy),
        "constant_rmse_points": 100 * rmse(constant, pairs.accuracy),
        "kendall_tau": kendall_tau(predicted, pairs.accuracy),
    }
