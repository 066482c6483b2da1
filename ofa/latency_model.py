"""Latency predictors for one device, vectorised over configs (numpy only).

Kinds, from OFA's own method to ours:
- `lut`: the sum of the device's LUT entries (OFA's latency model; biased, since layers
  timed alone do not add up to the network timed whole).
- `lut-corrected`: `a * lut_sum + b + c * active_blocks`, fitted on end-to-end subnet
  measurements (three numbers: a scale, a fixed cost, a cost per block).
- `lut-ridge`: every block type (stage, first-or-not, kernel, expand: 90 types) gets its own
  multiplier of its LUT latency, plus a fixed cost and a cost per block. Multipliers are
  pulled towards 1 (the LUT being right) by a ridge penalty chosen by cross-validation, so
  a few hundred subnets suffice.
- `transfer`: another device's predictor rescaled, `a * source(x) + b`, from K end-to-end
  measurements of the new device (few-sample adaptation).

Predictors are saved as JSON with a format version; nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from ofa import space
from ofa.batch import ConfigBatch
from ofa.config import SubnetConfig
from ofa.plan import layer_plan

__all__ = ["BlockTable", "LatencyPredictor", "fit_predictor", "fit_transfer", "load_predictor",
           "KINDS", "FORMAT", "VERSION"]

FORMAT = "ofa-fleet/latency-predictor"
VERSION = 1
KINDS = ("lut", "lut-corrected", "lut-ridge", "transfer")
N_TYPES = space.N_STAGES * 2 * len(space.KERNEL_CHOICES) * len(space.EXPAND_CHOICES)


def _number(data: Mapping, name: str, prefix: str = "") -> float:
    """`data[name]` as a finite number (a bool, string or null is refused)."""
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"{prefix}{name}: expected a finite number, got {value!r:.40}")
    return float(value)


def _numbers(data: Mapping, name: str, shape: tuple[int | None, ...],
             prefix: str = "") -> np.ndarray:
    """`data[name]` as a float array of `shape` (None: any length), every value finite."""
    field, value = f"{prefix}{name}", data.get(name)
    expected = "(" + ", ".join("N" if n is None else str(n) for n in shape) + ")"
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nesting
        array = np.asarray(None)
    if not isinstance(value, list) or array.dtype.kind not in "iuf":
        raise ValueError(f"{field}: expected a (nested) list of numbers of shape {expected}, "
                         f"got {value!r:.40}")
    if array.ndim != len(shape) or any(n not in (None, m) for n, m in zip(shape, array.shape)):
        raise ValueError(f"{field}: expected shape {expected}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{field}: expected finite numbers, got NaN or infinity")
    return array.astype(float)


# The parameters each kind stores: scalars, and arrays with their shapes.
_PARAMS = {"lut": ((), {}),
           "lut-corrected": (("scale", "offset", "per_block"), {}),
           "lut-ridge": (("fixed_scale", "per_block", "offset", "alpha"),
                         {"multipliers": (N_TYPES,)}),
           "transfer": (("scale", "offset"), {})}


@dataclass(frozen=True)
class BlockTable:
    """A LUT laid out for vectorised lookups: per resolution the fixed part (first conv,
    `blocks[0]`, tail) and each elastic block's latency for every (kernel, expand)."""

    width: float
    resolutions: np.ndarray  # (R,)
    fixed: np.ndarray        # (R,)
    blocks: np.ndarray       # (R, 20, 3, 3)

    @classmethod
    def from_lut(cls, lut: Mapping[int, Mapping[str, float]], width: float) -> "BlockTable":
        """From `{r: {lut_key: ms}}`; a key the space needs but the LUT lacks is an error."""
        resolutions = sorted(lut)
        fixed = np.zeros(len(resolutions))
        blocks = np.zeros((len(resolutions), space.N_BLOCKS, len(space.KERNEL_CHOICES),
                           len(space.EXPAND_CHOICES)))
        missing = []

        def look(r: int, key: str) -> float:
            if key not in lut[r]:
                missing.append(f"r={r} {key}")
                return np.nan
            return float(lut[r][key])

        for i, r in enumerate(resolutions):
            plan = layer_plan(SubnetConfig.largest(r=r, w=width))
            fixed[i] = sum(look(r, spec.lut_key) for spec in plan[:2] + plan[-4:])
            for b, spec in enumerate(plan[2:2 + space.N_BLOCKS]):
                for ki, kernel in enumerate(space.KERNEL_CHOICES):
                    for ei, expand in enumerate(space.EXPAND_CHOICES):
                        mid = space.middle_channels(spec.in_channels, expand)
                        blocks[i, b, ki, ei] = look(r, dataclasses.replace(
                            spec, kernel=kernel, mid=mid).lut_key)
        if missing:
            raise ValueError(f"lut: {len(missing)} entries missing, first {missing[0]}")
        return cls(width, np.array(resolutions), fixed, blocks)

    def rows(self, r: np.ndarray) -> np.ndarray:
        rows = np.searchsorted(self.resolutions, r)
        bad = (rows >= len(self.resolutions)) | (self.resolutions[np.minimum(
            rows, len(self.resolutions) - 1)] != r)
        if bad.any():
            raise ValueError(f"r: no LUT for resolution {int(np.asarray(r)[bad][0])}; "
                             f"this predictor knows {self.resolutions.tolist()}")
        return rows

    def block_latencies(self, batch: ConfigBatch) -> np.ndarray:
        """(n, 20) ms of each elastic block, 0 where depth skips it."""
        rows = self.rows(batch.r)
        values = self.blocks[rows[:, None], np.arange(space.N_BLOCKS), batch.ks, batch.e]
        return values * batch.active

    def lut_sum(self, batch: ConfigBatch) -> np.ndarray:
        return self.fixed[self.rows(batch.r)] + self.block_latencies(batch).sum(axis=1)

    def to_dict(self) -> dict:
        return {"width": self.width, "resolutions": self.resolutions.tolist(),
                "fixed": self.fixed.tolist(), "blocks": self.blocks.tolist()}

    @classmethod
    def from_dict(cls, data: Mapping) -> "BlockTable":
        """From a predictor file's `table`: every field checked for type, shape and range."""
        if not isinstance(data, Mapping):
            raise ValueError(f"table: expected an object, got {type(data).__name__}")
        width = _number(data, "width", "table.")
        if width not in space.WIDTH_CHOICES:
            raise ValueError(f"table.width: expected one of {space.WIDTH_CHOICES}, got {width}")
        resolutions = _numbers(data, "resolutions", (None,), "table.")
        count = len(resolutions)
        if (count == 0 or np.any(resolutions != np.round(resolutions))
                or np.any(resolutions < space.MIN_RESOLUTION)
                or np.any(resolutions > space.MAX_RESOLUTION) or np.any(np.diff(resolutions) <= 0)):
            raise ValueError(f"table.resolutions: expected increasing integers in "
                             f"{space.MIN_RESOLUTION}..{space.MAX_RESOLUTION}, "
                             f"got {resolutions.tolist()}")
        return cls(width, resolutions.astype(int), _numbers(data, "fixed", (count,), "table."),
                   _numbers(data, "blocks", (count, space.N_BLOCKS, len(space.KERNEL_CHOICES),
                                             len(space.EXPAND_CHOICES)), "table."))


def _type_features(table: BlockTable, batch: ConfigBatch) -> np.ndarray:
    """(n, 90): LUT latency summed per block type (stage, first-or-not, kernel, expand)."""
    latencies = table.block_latencies(batch)
    block = np.arange(space.N_BLOCKS)
    position = (block // space.MAX_DEPTH) * 2 + (block % space.MAX_DEPTH > 0)
    types = (position[None, :] * 9 + batch.ks.astype(int) * 3 + batch.e.astype(int))
    features = np.zeros((len(batch), N_TYPES))
    np.add.at(features, (np.repeat(np.arange(len(batch)), space.N_BLOCKS), types.ravel()),
              latencies.ravel())
    return features


@dataclass
class LatencyPredictor:
    """End-to-end latency (ms) of configs on one device. `params` depend on the kind."""

    kind: str
    table: BlockTable | None
    params: dict = field(default_factory=dict)
    source: "LatencyPredictor | None" = None
    provenance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)

    @property
    def width(self) -> float:
        return self.source.width if self.kind == "transfer" else self.table.width

    def predict(self, configs: ConfigBatch | Sequence[SubnetConfig]) -> np.ndarray:
        batch = configs if isinstance(configs, ConfigBatch) else ConfigBatch.from_configs(configs)
        if batch.w != self.width:
            raise ValueError(f"w: the configs are w{batch.w}, this predictor is w{self.width}")
        p = self.params
        if self.kind == "transfer":
            return p["scale"] * self.source.predict(batch) + p["offset"]
        lut_sum = self.table.lut_sum(batch)
        if self.kind == "lut":
            return lut_sum
        n_blocks = batch.active.sum(axis=1)
        if self.kind == "lut-corrected":
            return p["scale"] * lut_sum + p["offset"] + p["per_block"] * n_blocks
        rows = self.table.rows(batch.r)
        return (_type_features(self.table, batch) @ np.asarray(p["multipliers"])
                + self.table.fixed[rows] * p["fixed_scale"] + p["offset"]
                + p["per_block"] * n_blocks)

    # ------------------------------------------------------------------ files
    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "kind": self.kind,
                "table": self.table.to_dict() if self.table is not None else None,
                "params": self.params,
                "source": self.source.to_dict() if self.source is not None else None,
                "provenance": self.provenance, "metrics": self.metrics}

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def from_dict(cls, data: Mapping) -> "LatencyPredictor":
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"format: not an ofa-fleet latency predictor (expected format "
                             f"{FORMAT!r})")
        if data.get("version") != VERSION:
            raise ValueError(f"version: this ofa-fleet reads predictor format version {VERSION}, "
                             f"the file is version {data.get('version')!r}")
        kind = data.get("kind")
        if kind not in KINDS:
            raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r:.40}")
        for name in ("params", "provenance", "metrics"):
            if not isinstance(data.get(name, {}), Mapping):
                raise ValueError(f"{name}: expected an object, got "
                                 f"{type(data.get(name)).__name__}")
        params = data.get("params", {})
        scalars, arrays = _PARAMS[kind]
        checked = {name: _number(params, name, "params.") for name in scalars}
        checked.update({name: _numbers(params, name, shape, "params.").tolist()
                        for name, shape in arrays.items()})
        source = None
        if kind == "transfer":
            if not isinstance(data.get("source"), Mapping):
                raise ValueError("source: a transfer predictor needs the source predictor")
            if data["source"].get("kind") == "transfer":  # `predictor train` never makes one
                raise ValueError("source.kind: expected lut, lut-corrected or lut-ridge")
            try:
                source = cls.from_dict(data["source"])
            except ValueError as exc:
                raise ValueError(f"source.{exc}") from None
        table = None if kind == "transfer" else BlockTable.from_dict(data.get("table"))
        return cls(kind, table, checked, source, dict(data.get("provenance", {})),
                   dict(data.get("metrics", {})))


def load_predictor(path: str | Path) -> LatencyPredictor:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a predictor file (invalid JSON: {exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: not a predictor file (JSON nested too deeply)") from None
    try:
        return LatencyPredictor.from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def _least_squares(features: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(features, target, rcond=None)[0]


def _ridge_design(table: BlockTable, batch: ConfigBatch) -> tuple[np.ndarray, np.ndarray]:
    """Penalised columns (90 type latencies) and free columns (fixed part, blocks, 1)."""
    rows = table.rows(batch.r)
    free = np.column_stack([table.fixed[rows], batch.active.sum(axis=1), np.ones(len(batch))])
    return _type_features(table, batch), free


def _fit_ridge(penalised: np.ndarray, free: np.ndarray, target: np.ndarray,
               alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Minimise |target - P m - F f|^2 + lam |m - 1|^2 for multipliers m and free weights f."""
    design = np.hstack([penalised, free])
    lam = alpha * np.mean(np.sum(penalised ** 2, axis=0) + 1e-12)
    n_pen = penalised.shape[1]
    residual = target - penalised.sum(axis=1)  # solve for m - 1
    gram = design.T @ design
    gram[np.arange(n_pen), np.arange(n_pen)] += lam
    solution = np.linalg.solve(gram + 1e-9 * np.eye(len(gram)), design.T @ residual)
    return 1.0 + solution[:n_pen], solution[n_pen:]


def fit_predictor(kind: str, table: BlockTable, configs: Sequence[SubnetConfig] | None = None,
                  measured_ms: Sequence[float] | None = None, folds: int = 5,
                  seed: int = 0) -> LatencyPredictor:
    """Fit a `lut`, `lut-corrected` or `lut-ridge` predictor from a device's LUT and (for
    the learned kinds) end-to-end medians of `configs`."""
    if kind == "lut":
        return LatencyPredictor("lut", table)
    if kind not in ("lut-corrected", "lut-ridge"):
        raise ValueError(f"kind: expected lut, lut-corrected or lut-ridge, got {kind!r}")
    if not configs or measured_ms is None or len(configs) != len(measured_ms) or len(configs) < 4:
        raise ValueError(f"configs: {kind} needs end-to-end measurements of at least 4 subnets")
    batch = ConfigBatch.from_configs(configs)
    target = np.asarray(measured_ms, float)
    if kind == "lut-corrected":
        features = np.column_stack([table.lut_sum(batch), np.ones(len(batch)),
                                    batch.active.sum(axis=1)])
        scale, offset, per_block = _least_squares(features, target)
        return LatencyPredictor(kind, table, {"scale": float(scale), "offset": float(offset),
                                              "per_block": float(per_block)})
    penalised, free = _ridge_design(table, batch)
    alpha = _choose_alpha(penalised, free, target, folds, seed)
    multipliers, (fixed_scale, per_block, offset) = _fit_ridge(penalised, free, target, alpha)
    return LatencyPredictor(kind, table, {"multipliers": multipliers.tolist(),
                                          "fixed_scale": float(fixed_scale),
                                          "per_block": float(per_block), "offset": float(offset),
                                          "alpha": alpha})


def _choose_alpha(penalised: np.ndarray, free: np.ndarray, target: np.ndarray, folds: int,
                  seed: int) -> float:
    """The ridge strength with the lowest cross-validated relative RMSE."""
    folds = max(2, min(folds, len(target)))
    assignment = np.random.default_rng(seed).permutation(len(target)) % folds
    best, best_error = 1.0, np.inf
    for alpha in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0):
        errors = []
        for fold in range(folds):
            train, test = assignment != fold, assignment == fold
            m, f = _fit_ridge(penalised[train], free[train], target[train], alpha)
            predicted = penalised[test] @ m + free[test] @ f
            errors.append(((predicted - target[test]) / target[test]) ** 2)
        error = float(np.mean(np.concatenate(errors)))
        if error < best_error:
            best, best_error = alpha, error
    return best


def fit_transfer(source: LatencyPredictor, configs: Sequence[SubnetConfig],
                 measured_ms: Sequence[float]) -> LatencyPredictor:
    """Adapt another device's predictor from K end-to-end measurements of this device:
    a scale and an offset (only a scale below 3 measurements)."""
    if not configs or len(configs) != len(measured_ms):
        raise ValueError("configs: transfer needs at least one end-to-end measurement")
    predicted = source.predict(configs)
    target = np.asarray(measured_ms, float)
    if len(target) < 3:
        scale, offset = float(np.median(target / predicted)), 0.0
    else:
        scale, offset = (float(x) for x in _least_squares(
            np.column_stack([predicted, np.ones(len(target))]), target))
    return LatencyPredictor("transfer", None, {"scale": scale, "offset": offset}, source=source)
