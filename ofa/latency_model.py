"""Latency predictors for one device, vectorised over configs (numpy only).

Kinds, from OFA's own method to ours, each a class registered under its name (the `kind`
its files carry and the command line's `--kind`):
- `lut` (LutSum): the sum of the device's LUT entries (OFA's latency model; biased, since
  layers timed alone do not add up to the network timed whole).
- `lut-corrected` (LutCorrected): `a * lut_sum + b + c * active_blocks`, fitted on
  end-to-end subnet measurements (three numbers: a scale, a fixed cost, a cost per block).
- `lut-ridge` (LutRidge): every block type gets its own multiplier of its LUT latency,
  pulled towards 1 by a ridge penalty chosen by cross-validation.
- `structure` (Structure): no LUT at all, for targets where a LUT sum is a poor model or
  none was measured (GPUs, large batches): end-to-end latency as a cost per active block of
  each type (stage, first-or-not, kernel, expand) times the input's pixel area, plus a
  fixed cost per pixel and a constant. The per-type costs are pulled towards one shared cost
  per block by a ridge penalty chosen by cross-validation.
- `transfer` (Transfer): another device's predictor of any other kind rescaled,
  `a * source(x) + b`, from K end-to-end measurements of the new device (few-sample
  adaptation).

Predictors are saved as JSON with a format version; nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np

from ofa import space
from ofa.batch import ConfigBatch
from ofa.config import SubnetConfig
from ofa.plan import layer_plan

if TYPE_CHECKING:  # typing.Self is Python 3.11+; the project supports 3.10
    from typing_extensions import Self

__all__ = [
    "BlockTable",
    "LatencyPredictor",
    "TablePredictor",
    "LutSum",
    "LutCorrected",
    "LutRidge",
    "Structure",
    "Transfer",
    "PREDICTORS",
    "KINDS",
    "TABLE_KINDS",
    "SOURCE_KINDS",
    "fit_predictor",
    "n_types",
    "predictor_from_dict",
    "load_predictor",
    "FORMAT",
    "VERSION",
]

FORMAT = "ofa-fleet/latency-predictor"
VERSION = 1
N_TYPES = space.N_STAGES * 2 * len(space.KERNEL_CHOICES) * len(space.EXPAND_CHOICES)


def n_types(family: space.Family) -> int:
    """Block types (stage, first-or-not, kernel, expand): MobileNetV3's 90 (`N_TYPES`);
    ProxylessNAS's tail block is a sixth stage's, 108."""
    stages = family.n_stages + (1 if family.tail_blocks else 0)
    return stages * 2 * len(family.kernel_choices) * len(family.expand_choices)


def _number(data: Mapping, name: str, prefix: str = "") -> float:
    """`data[name]` as a finite number (a bool, string or null is refused)."""
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise ValueError(f"{prefix}{name}: expected a finite number, got {value!r:.40}")
    return float(value)


def _numbers(
    data: Mapping, name: str, shape: tuple[int | None, ...], prefix: str = ""
) -> np.ndarray:
    """`data[name]` as a float array of `shape` (None: any length), every value finite."""
    field, value = f"{prefix}{name}", data.get(name)
    expected = "(" + ", ".join("N" if n is None else str(n) for n in shape) + ")"
    try:
        array = np.asarray(value)
    except ValueError:  # ragged nesting
        array = np.asarray(None)
    if not isinstance(value, list) or array.dtype.kind not in "iuf":
        raise ValueError(
            f"{field}: expected a (nested) list of numbers of shape {expected}, got {value!r:.40}"
        )
    if array.ndim != len(shape) or any(
        n not in (None, m) for n, m in zip(shape, array.shape, strict=True)
    ):
        raise ValueError(f"{field}: expected shape {expected}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{field}: expected finite numbers, got NaN or infinity")
    return array.astype(float)


@dataclass(frozen=True)
class BlockTable:
    """A LUT laid out for vectorised lookups: per resolution the fixed part (first conv,
    `blocks[0]`, head) and each elastic block's latency for every (kernel, expand), for the
    subnets of one supernet (`family`, `width`)."""

    width: float
    resolutions: np.ndarray  # (R,)
    fixed: np.ndarray  # (R,)
    blocks: np.ndarray  # (R, blocks, 3, 3): 20 blocks for MobileNetV3, 21 for ProxylessNAS
    family: str = space.MOBILENET_V3.name

    @classmethod
    def from_lut(
        cls,
        lut: Mapping[int, Mapping[str, float]],
        width: float,
        family: str = space.MOBILENET_V3.name,
    ) -> BlockTable:
        """From `{r: {lut_key: ms}}`; a key the space needs but the LUT lacks is an error."""
        f = space.family_named(family)
        resolutions = sorted(lut)
        fixed = np.zeros(len(resolutions))
        blocks = np.zeros(
            (len(resolutions), f.n_blocks, len(f.kernel_choices), len(f.expand_choices))
        )
        missing = []

        def look(r: int, key: str) -> float:
            if key not in lut[r]:
                missing.append(f"r={r} {key}")
                return np.nan
            return float(lut[r][key])

        for i, r in enumerate(resolutions):
            plan = layer_plan(SubnetConfig.largest(r=r, w=width, family=f.name))
            elastic = plan[2 : 2 + f.n_blocks]
            fixed[i] = sum(look(r, spec.lut_key) for spec in plan[:2] + plan[2 + f.n_blocks :])
            for b, spec in enumerate(elastic):
                for ki, kernel in enumerate(f.kernel_choices):
                    for ei, expand in enumerate(f.expand_choices):
                        mid = space.middle_channels(spec.in_channels, expand)
                        key = dataclasses.replace(spec, kernel=kernel, mid=mid, expand=expand)
                        blocks[i, b, ki, ei] = look(r, key.lut_key)
        if missing:
            raise ValueError(f"lut: {len(missing)} entries missing, first {missing[0]}")
        return cls(width, np.array(resolutions), fixed, blocks, f.name)

    @property
    def family_space(self) -> space.Family:
        return space.FAMILIES[self.family]

    def rows(self, r: np.ndarray) -> np.ndarray:
        rows = np.searchsorted(self.resolutions, r)
        bad = (rows >= len(self.resolutions)) | (
            self.resolutions[np.minimum(rows, len(self.resolutions) - 1)] != r
        )
        if bad.any():
            raise ValueError(
                f"r: no LUT for resolution {int(np.asarray(r)[bad][0])}; "
                f"this predictor knows {self.resolutions.tolist()}"
            )
        return rows

    def block_latencies(self, batch: ConfigBatch) -> np.ndarray:
        """(n, blocks) ms of each elastic block, 0 where depth skips it."""
        rows = self.rows(batch.r)
        values = self.blocks[rows[:, None], np.arange(self.blocks.shape[1]), batch.ks, batch.e]
        return values * batch.active

    def lut_sum(self, batch: ConfigBatch) -> np.ndarray:
        return self.fixed[self.rows(batch.r)] + self.block_latencies(batch).sum(axis=1)

    def to_dict(self) -> dict:
        return {
            "family": self.family,
            "width": self.width,
            "resolutions": self.resolutions.tolist(),
            "fixed": self.fixed.tolist(),
            "blocks": self.blocks.tolist(),
        }

    @classmethod
    def from_dict(cls, data: object) -> BlockTable:
        """From a predictor file's `table`: every field checked for type, shape and range."""
        if not isinstance(data, Mapping):
            raise ValueError(f"table: expected an object, got {type(data).__name__}")
        family, width = _supernet(data, "table.")
        resolutions = _resolutions(data, "table.")
        count = len(resolutions)
        shape = (count, family.n_blocks, len(family.kernel_choices), len(family.expand_choices))
        return cls(
            width,
            resolutions,
            _numbers(data, "fixed", (count,), "table."),
            _numbers(data, "blocks", shape, "table."),
            family.name,
        )


def _supernet(data: Mapping, prefix: str) -> tuple[space.Family, float]:
    """A file's supernet: its `family` (MobileNetV3 in files that name none) and width."""
    name = data.get("family", space.MOBILENET_V3.name)
    try:
        family = space.family_named(name)
    except ValueError as exc:
        raise ValueError(f"{prefix}{exc}") from None
    width = _number(data, "width", prefix)
    if width not in family.width_choices:
        raise ValueError(
            f"{prefix}width: expected one of {family.width_choices} for {family.title}, got {width}"
        )
    return family, width


def _resolutions(data: Mapping, prefix: str) -> np.ndarray:
    """A file's resolutions: increasing integers of the space, at least one."""
    resolutions = _numbers(data, "resolutions", (None,), prefix)
    if (
        len(resolutions) == 0
        or np.any(resolutions != np.round(resolutions))
        or np.any(resolutions < space.MIN_RESOLUTION)
        or np.any(resolutions > space.MAX_RESOLUTION)
        or np.any(np.diff(resolutions) <= 0)
    ):
        raise ValueError(
            f"{prefix}resolutions: expected increasing integers in "
            f"{space.MIN_RESOLUTION}..{space.MAX_RESOLUTION}, got {resolutions.tolist()}"
        )
    return resolutions.astype(int)


def _type_features(table: BlockTable, batch: ConfigBatch) -> np.ndarray:
    """(n, 90): LUT latency summed per block type (stage, first-or-not, kernel, expand)."""
    return _per_type(batch, table.block_latencies(batch))


def _per_type(batch: ConfigBatch, values: np.ndarray) -> np.ndarray:
    """(n, types): `values` (n, blocks), one per elastic block, summed per block type (a
    tail block is the first of its own stage)."""
    family = batch.family_space
    count = n_types(family)
    block = np.arange(family.n_blocks)
    position = (block // family.max_depth) * 2 + (block % family.max_depth > 0)
    types = position[None, :] * 9 + batch.ks.astype(int) * 3 + batch.e.astype(int)
    cells = np.arange(len(batch))[:, None] * count + types  # row-major (n, types) cells
    summed = np.bincount(cells.ravel(), np.asarray(values, float).ravel(), len(batch) * count)
    return summed.reshape(len(batch), count)


def _structure_design(batch: ConfigBatch) -> tuple[np.ndarray, np.ndarray]:
    """Penalised columns (active blocks per type x pixel area, (r/224)^2) and free columns
    (active blocks x area: the shared cost per block; area: the fixed layers; 1)."""
    area = (batch.r.astype(float) / 224.0) ** 2
    counts = _per_type(batch, batch.active.astype(float)) * area[:, None]
    free = np.column_stack([counts.sum(axis=1), area, np.ones(len(batch))])
    return counts, free


# ---------------------------------------------------------------------------- predictors

PREDICTORS: dict[str, type[LatencyPredictor]] = {}
P = TypeVar("P", bound="LatencyPredictor")


def register(cls: type[P]) -> type[P]:
    """Make a predictor kind loadable by the name its files carry."""
    PREDICTORS[cls.kind] = cls
    return cls


@dataclass(frozen=True, kw_only=True)
class LatencyPredictor(ABC):
    """End-to-end latency (ms) of configs on one device; each kind is a registered subclass.

    A predictor is complete when made: `provenance` (what it was fitted on) and `metrics`
    (how it scored on held-out subnets) are given to `fit` or to `with_details`, which
    returns a copy; nothing is patched on afterwards."""

    kind: ClassVar[str]
    provenance: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, Any] = field(default_factory=dict)

    @property
    @abstractmethod
    def width(self) -> float:
        """The supernet width of the configs it predicts."""

    @property
    @abstractmethod
    def family(self) -> str:
        """The supernet family of the configs it predicts."""

    @property
    @abstractmethod
    def resolutions(self) -> np.ndarray:
        """The resolutions its LUT has: the only ones it can predict."""

    def predict(self, configs: ConfigBatch | Sequence[SubnetConfig]) -> np.ndarray:
        batch = configs if isinstance(configs, ConfigBatch) else ConfigBatch.from_configs(configs)
        if batch.family != self.family:
            raise ValueError(
                f"family: the configs are {batch.family_space.title} subnets, this predictor "
                f"is for {space.FAMILIES[self.family].title}"
            )
        if batch.w != self.width:
            raise ValueError(f"w: the configs are w{batch.w}, this predictor is w{self.width}")
        return self._predict(batch)

    @abstractmethod
    def _predict(self, batch: ConfigBatch) -> np.ndarray:
        """Latencies of a batch already checked to be of this predictor's width."""

    def with_details(
        self,
        *,
        provenance: Mapping[str, Any] | None = None,
        metrics: Mapping[str, Any] | None = None,
    ) -> Self:
        """A copy with this provenance and/or these metrics."""
        changes = {"provenance": provenance, "metrics": metrics}
        return dataclasses.replace(
            self, **{k: dict(v) for k, v in changes.items() if v is not None}
        )

    # ------------------------------------------------------------------ files
    @abstractmethod
    def _content(self) -> dict[str, Any]:
        """The file's `table`, `params` and `source` fields."""

    @classmethod
    @abstractmethod
    def _read(
        cls, data: Mapping[str, Any], params: Mapping[str, Any], details: dict[str, Any]
    ) -> Self:
        """From a file whose envelope is checked: every number checked, errors naming the
        field; `details` are the keyword arguments provenance and metrics."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "kind": self.kind,
            **self._content(),
            "provenance": dict(self.provenance),
            "metrics": dict(self.metrics),
        }

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict()))


def _scalars(params: Mapping[str, Any], *names: str) -> dict[str, float]:
    return {name: _number(params, name, "params.") for name in names}


@dataclass(frozen=True, kw_only=True)
class TablePredictor(LatencyPredictor):
    """A predictor made from the device's own LUT (`table`); `fit` makes any kind of it
    from the table and end-to-end medians of `configs` (which the plain LUT sum ignores)."""

    table: BlockTable

    @property
    def width(self) -> float:
        return self.table.width

    @property
    def family(self) -> str:
        return self.table.family

    @property
    def resolutions(self) -> np.ndarray:
        return self.table.resolutions

    @classmethod
    @abstractmethod
    def fit(
        cls,
        table: BlockTable,
        configs: Sequence[SubnetConfig] | None = None,
        measured_ms: Sequence[float] | None = None,
        *,
        folds: int = 5,
        seed: int = 0,
        provenance: Mapping[str, Any] | None = None,
    ) -> Self:
        """Fit this kind; `folds` and `seed` drive the cross-validation of the kinds that
        choose a hyper-parameter."""

    @abstractmethod
    def params(self) -> dict[str, Any]:
        """The fitted numbers, as the file stores them."""

    @classmethod
    @abstractmethod
    def _read_params(cls, params: Mapping[str, Any], table: BlockTable) -> dict[str, Any]:
        """The checked fitted numbers, as keyword arguments."""

    def _content(self) -> dict[str, Any]:
        return {"table": self.table.to_dict(), "params": self.params(), "source": None}

    @classmethod
    def _read(
        cls, data: Mapping[str, Any], params: Mapping[str, Any], details: dict[str, Any]
    ) -> Self:
        table = BlockTable.from_dict(data.get("table"))
        return cls(table=table, **cls._read_params(params, table), **details)

    @classmethod
    def _training_set(
        cls,
        table: BlockTable,
        configs: Sequence[SubnetConfig] | None,
        measured_ms: Sequence[float] | None,
    ) -> tuple[ConfigBatch, np.ndarray]:
        """`_training_set`, every subnet of the table's supernet."""
        batch, target = _training_set(cls.kind, configs, measured_ms)
        if (batch.family, batch.w) != (table.family, table.width):
            raise ValueError(
                f"configs: the subnets are {batch.family_space.title} w{batch.w}, the LUT "
                f"{table.family_space.title} w{table.width}"
            )
        return batch, target


def _training_set(
    kind: str, configs: Sequence[SubnetConfig] | None, measured_ms: Sequence[float] | None
) -> tuple[ConfigBatch, np.ndarray]:
    """The learned kinds' training data: at least 4 subnets, one median each."""
    if not configs or measured_ms is None or len(configs) != len(measured_ms) or len(configs) < 4:
        raise ValueError(f"configs: {kind} needs end-to-end measurements of at least 4 subnets")
    return ConfigBatch.from_configs(configs), np.asarray(measured_ms, float)


@register
@dataclass(frozen=True, kw_only=True)
class LutSum(TablePredictor):
    """OFA's latency model: the sum of the device's LUT entries (biased, since layers
    timed alone do not add up to the network timed whole)."""

    kind: ClassVar[str] = "lut"

    @classmethod
    def fit(
        cls,
        table: BlockTable,
        configs: Sequence[SubnetConfig] | None = None,
        measured_ms: Sequence[float] | None = None,
        *,
        folds: int = 5,
        seed: int = 0,
        provenance: Mapping[str, Any] | None = None,
    ) -> Self:
        return cls(table=table, provenance=dict(provenance or {}))

    def _predict(self, batch: ConfigBatch) -> np.ndarray:
        return self.table.lut_sum(batch)

    def params(self) -> dict[str, Any]:
        return {}

    @classmethod
    def _read_params(cls, params: Mapping[str, Any], table: BlockTable) -> dict[str, Any]:
        return {}


@register
@dataclass(frozen=True, kw_only=True)
class LutCorrected(TablePredictor):
    """`scale * lut_sum + offset + per_block * active_blocks`, fitted by least squares."""

    kind: ClassVar[str] = "lut-corrected"
    scale: float
    offset: float
    per_block: float

    @classmethod
    def fit(
        cls,
        table: BlockTable,
        configs: Sequence[SubnetConfig] | None = None,
        measured_ms: Sequence[float] | None = None,
        *,
        folds: int = 5,
        seed: int = 0,
        provenance: Mapping[str, Any] | None = None,
    ) -> Self:
        batch, target = cls._training_set(table, configs, measured_ms)
        features = np.column_stack(
            [table.lut_sum(batch), np.ones(len(batch)), batch.active.sum(axis=1)]
        )
        scale, offset, per_block = _least_squares(features, target)
        return cls(
            table=table,
            scale=float(scale),
            offset=float(offset),
            per_block=float(per_block),
            provenance=dict(provenance or {}),
        )

    def _predict(self, batch: ConfigBatch) -> np.ndarray:
        return (
            self.scale * self.table.lut_sum(batch)
            + self.offset
            + self.per_block * batch.active.sum(axis=1)
        )

    def params(self) -> dict[str, Any]:
        return {"scale": self.scale, "offset": self.offset, "per_block": self.per_block}

    @classmethod
    def _read_params(cls, params: Mapping[str, Any], table: BlockTable) -> dict[str, Any]:
        return _scalars(params, "scale", "offset", "per_block")


@register
@dataclass(frozen=True, kw_only=True)
class LutRidge(TablePredictor):
    """Every block type (stage, first-or-not, kernel, expand: 90 types, 108 for
    ProxylessNAS) gets its own multiplier of its LUT latency, plus a scale of the fixed
    part, a fixed cost and a cost per block. Multipliers are pulled towards 1 (the LUT being
    right) by a ridge penalty `alpha` chosen by cross-validation, so a few hundred subnets
    suffice."""

    kind: ClassVar[str] = "lut-ridge"
    multipliers: tuple[float, ...]
    fixed_scale: float
    per_block: float
    offset: float
    alpha: float

    @classmethod
    def fit(
        cls,
        table: BlockTable,
        configs: Sequence[SubnetConfig] | None = None,
        measured_ms: Sequence[float] | None = None,
        *,
        folds: int = 5,
        seed: int = 0,
        provenance: Mapping[str, Any] | None = None,
    ) -> Self:
        batch, target = cls._training_set(table, configs, measured_ms)
        penalised, free = _ridge_design(table, batch)
        alpha = _choose_alpha(penalised, free, target, folds, seed)
        multipliers, (fixed_scale, per_block, offset) = _fit_ridge(penalised, free, target, alpha)
        return cls(
            table=table,
            multipliers=tuple(multipliers.tolist()),
            fixed_scale=float(fixed_scale),
            per_block=float(per_block),
            offset=float(offset),
            alpha=alpha,
            provenance=dict(provenance or {}),
        )

    def _predict(self, batch: ConfigBatch) -> np.ndarray:
        rows = self.table.rows(batch.r)
        return (
            _type_features(self.table, batch) @ np.asarray(self.multipliers)
            + self.table.fixed[rows] * self.fixed_scale
            + self.offset
            + self.per_block * batch.active.sum(axis=1)
        )

    def params(self) -> dict[str, Any]:
        return {
            "multipliers": list(self.multipliers),
            "fixed_scale": self.fixed_scale,
            "per_block": self.per_block,
            "offset": self.offset,
            "alpha": self.alpha,
        }

    @classmethod
    def _read_params(cls, params: Mapping[str, Any], table: BlockTable) -> dict[str, Any]:
        scalars = _scalars(params, "fixed_scale", "per_block", "offset", "alpha")
        multipliers = _numbers(params, "multipliers", (n_types(table.family_space),), "params.")
        return {**scalars, "multipliers": tuple(multipliers.tolist())}


@register
@dataclass(frozen=True, kw_only=True)
class Structure(LatencyPredictor):
    """No LUT: a cost per active block of each of the 90 types (108 for ProxylessNAS) per
    unit of pixel area, pulled towards one shared cost per block by a ridge penalty `alpha`
    chosen by cross-validation, plus a fixed cost per unit of area and a constant (see
    `_structure_design`). Predicts only the supernet and resolutions it was fitted on."""

    kind: ClassVar[str] = "structure"
    fitted_width: float
    fitted_family: str = space.MOBILENET_V3.name
    fitted_resolutions: tuple[int, ...]
    deviations: tuple[float, ...]  # of each type's cost from the shared one, ms per area
    per_block: float
    per_area: float
    offset: float
    alpha: float

    @property
    def width(self) -> float:
        return self.fitted_width

    @property
    def family(self) -> str:
        return self.fitted_family

    @property
    def resolutions(self) -> np.ndarray:
        return np.array(self.fitted_resolutions)

    @classmethod
    def fit(
        cls,
        configs: Sequence[SubnetConfig] | None,
        measured_ms: Sequence[float] | None,
        *,
        folds: int = 5,
        seed: int = 0,
        provenance: Mapping[str, Any] | None = None,
    ) -> Self:
        batch, target = _training_set(cls.kind, configs, measured_ms)
        penalised, free = _structure_design(batch)
        alpha = _choose_alpha(penalised, free, target, folds, seed, prior=0.0)
        deviations, (per_block, per_area, offset) = _fit_ridge(
            penalised, free, target, alpha, prior=0.0
        )
        return cls(
            fitted_width=batch.w,
            fitted_family=batch.family,
            fitted_resolutions=tuple(sorted({int(r) for r in batch.r})),
            deviations=tuple(deviations.tolist()),
            per_block=float(per_block),
            per_area=float(per_area),
            offset=float(offset),
            alpha=alpha,
            provenance=dict(provenance or {}),
        )

    def _predict(self, batch: ConfigBatch) -> np.ndarray:
        unknown = sorted(set(batch.r.tolist()) - set(self.fitted_resolutions))
        if unknown:
            raise ValueError(
                f"r: not fitted at resolution {unknown[0]}; this predictor knows "
                f"{list(self.fitted_resolutions)}"
            )
        penalised, free = _structure_design(batch)
        weights = np.array([self.per_block, self.per_area, self.offset])
        return penalised @ np.asarray(self.deviations) + free @ weights

    def _content(self) -> dict[str, Any]:
        return {
            "table": None,
            "params": {
                "family": self.fitted_family,
                "width": self.fitted_width,
                "resolutions": list(self.fitted_resolutions),
                "deviations": list(self.deviations),
                "per_block": self.per_block,
                "per_area": self.per_area,
                "offset": self.offset,
                "alpha": self.alpha,
            },
            "source": None,
        }

    @classmethod
    def _read(
        cls, data: Mapping[str, Any], params: Mapping[str, Any], details: dict[str, Any]
    ) -> Self:
        family, width = _supernet(params, "params.")
        resolutions = _resolutions(params, "params.")
        per_block, per_area, offset, alpha = (
            _number(params, name, "params.")
            for name in ("per_block", "per_area", "offset", "alpha")
        )
        deviations = _numbers(params, "deviations", (n_types(family),), "params.")
        return cls(
            fitted_width=width,
            fitted_family=family.name,
            fitted_resolutions=tuple(resolutions.tolist()),
            deviations=tuple(deviations.tolist()),
            per_block=per_block,
            per_area=per_area,
            offset=offset,
            alpha=alpha,
            **details,
        )


def _table_kinds() -> str:
    """'lut, lut-corrected or lut-ridge': the kinds made from a LUT, for messages."""
    return f"{', '.join(TABLE_KINDS[:-1])} or {TABLE_KINDS[-1]}"


def _source_kinds() -> str:
    """The kinds a transfer adapts (every other), for messages."""
    return f"{', '.join(SOURCE_KINDS[:-1])} or {SOURCE_KINDS[-1]}"


@register
@dataclass(frozen=True, kw_only=True)
class Transfer(LatencyPredictor):
    """Another device's predictor rescaled, `scale * source(x) + offset`, from K end-to-end
    measurements of this device (few-sample adaptation)."""

    kind: ClassVar[str] = "transfer"
    source: LatencyPredictor  # of any other kind
    scale: float
    offset: float

    @property
    def width(self) -> float:
        return self.source.width

    @property
    def family(self) -> str:
        return self.source.family

    @property
    def resolutions(self) -> np.ndarray:
        return self.source.resolutions

    @classmethod
    def fit(
        cls,
        source: LatencyPredictor,
        configs: Sequence[SubnetConfig],
        measured_ms: Sequence[float],
        *,
        provenance: Mapping[str, Any] | None = None,
    ) -> Self:
        """A scale and an offset (only a scale below 3 measurements)."""
        if isinstance(source, Transfer):
            raise ValueError(f"source.kind: expected {_source_kinds()}, got {source.kind!r}")
        if not configs or len(configs) != len(measured_ms):
            raise ValueError("configs: transfer needs at least one end-to-end measurement")
        predicted = source.predict(configs)
        target = np.asarray(measured_ms, float)
        if len(target) < 3:
            scale, offset = float(np.median(target / predicted)), 0.0
        else:
            scale, offset = (
                float(x)
                for x in _least_squares(np.column_stack([predicted, np.ones(len(target))]), target)
            )
        return cls(source=source, scale=scale, offset=offset, provenance=dict(provenance or {}))

    def _predict(self, batch: ConfigBatch) -> np.ndarray:
        return self.scale * self.source.predict(batch) + self.offset

    def _content(self) -> dict[str, Any]:
        return {
            "table": None,
            "params": {"scale": self.scale, "offset": self.offset},
            "source": self.source.to_dict(),
        }

    @classmethod
    def _read(
        cls, data: Mapping[str, Any], params: Mapping[str, Any], details: dict[str, Any]
    ) -> Self:
        scale, offset = (_number(params, name, "params.") for name in ("scale", "offset"))
        source = data.get("source")
        if not isinstance(source, Mapping):
            raise ValueError("source: a transfer predictor needs the source predictor")
        if source.get("kind") == cls.kind:  # `predictor train` never makes one
            raise ValueError(f"source.kind: expected {_source_kinds()}")
        try:
            loaded = predictor_from_dict(source)
        except ValueError as exc:
            raise ValueError(f"source.{exc}") from None
        return cls(source=loaded, scale=scale, offset=offset, **details)


KINDS: tuple[str, ...] = tuple(PREDICTORS)
TABLE_KINDS: tuple[str, ...] = tuple(
    kind for kind, cls in PREDICTORS.items() if issubclass(cls, TablePredictor)
)
SOURCE_KINDS: tuple[str, ...] = tuple(kind for kind in KINDS if kind != Transfer.kind)


def fit_predictor(
    kind: str,
    table: BlockTable,
    configs: Sequence[SubnetConfig] | None = None,
    measured_ms: Sequence[float] | None = None,
    *,
    folds: int = 5,
    seed: int = 0,
    provenance: Mapping[str, Any] | None = None,
) -> TablePredictor:
    """Fit the LUT-made kind named `kind` (the command line's `--kind`) from a device's LUT
    and, for the learned kinds, end-to-end medians of `configs`."""
    cls = PREDICTORS.get(kind)
    if cls is None or not issubclass(cls, TablePredictor):
        raise ValueError(f"kind: expected {_table_kinds()}, got {kind!r}")
    return cls.fit(table, configs, measured_ms, folds=folds, seed=seed, provenance=provenance)


def predictor_from_dict(data: Mapping[str, Any]) -> LatencyPredictor:
    """A predictor of any kind from its file's content, every field checked."""
    if not isinstance(data, Mapping) or data.get("format") != FORMAT:
        raise ValueError(f"format: not an ofa-fleet latency predictor (expected format {FORMAT!r})")
    if data.get("version") != VERSION:
        raise ValueError(
            f"version: this ofa-fleet reads predictor format version {VERSION}, "
            f"the file is version {data.get('version')!r}"
        )
    kind = data.get("kind")
    if kind not in KINDS:  # a tuple: an unhashable kind is refused too
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r:.40}")
    for name in ("params", "provenance", "metrics"):
        if not isinstance(data.get(name, {}), Mapping):
            raise ValueError(f"{name}: expected an object, got {type(data.get(name)).__name__}")
    details = {name: dict(data.get(name, {})) for name in ("provenance", "metrics")}
    return PREDICTORS[kind]._read(data, data.get("params", {}), details)


def load_predictor(path: str | Path) -> LatencyPredictor:
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a predictor file (invalid JSON: {exc})") from None
    except RecursionError:
        raise ValueError(f"{path}: not a predictor file (JSON nested too deeply)") from None
    try:
        return predictor_from_dict(data)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# ---------------------------------------------------------------------------- fitting


def _least_squares(features: np.ndarray, target: np.ndarray) -> np.ndarray:
    return np.linalg.lstsq(features, target, rcond=None)[0]


def _ridge_design(table: BlockTable, batch: ConfigBatch) -> tuple[np.ndarray, np.ndarray]:
    """Penalised columns (90 type latencies) and free columns (fixed part, blocks, 1)."""
    rows = table.rows(batch.r)
    free = np.column_stack([table.fixed[rows], batch.active.sum(axis=1), np.ones(len(batch))])
    return _type_features(table, batch), free


def _fit_ridge(
    penalised: np.ndarray, free: np.ndarray, target: np.ndarray, alpha: float, prior: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise |target - P m - F f|^2 + lam |m - prior|^2 for the penalised weights m and
    free weights f."""
    design = np.hstack([penalised, free])
    lam = alpha * np.mean(np.sum(penalised**2, axis=0) + 1e-12)
    n_pen = penalised.shape[1]
    residual = target - prior * penalised.sum(axis=1)  # solve for m - prior
    gram = design.T @ design
    gram[np.arange(n_pen), np.arange(n_pen)] += lam
    solution = np.linalg.solve(gram + 1e-9 * np.eye(len(gram)), design.T @ residual)
    return prior + solution[:n_pen], solution[n_pen:]


def _choose_alpha(
    penalised: np.ndarray,
    free: np.ndarray,
    target: np.ndarray,
    folds: int,
    seed: int,
    prior: float = 1.0,
) -> float:
    """The ridge strength with the lowest cross-validated relative RMSE."""
    folds = max(2, min(folds, len(target)))
    assignment = np.random.default_rng(seed).permutation(len(target)) % folds
    best, best_error = 1.0, np.inf
    for alpha in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0):
        errors = []
        for fold in range(folds):
            train, test = assignment != fold, assignment == fold
            m, f = _fit_ridge(penalised[train], free[train], target[train], alpha, prior)
            predicted = penalised[test] @ m + free[test] @ f
            errors.append(((predicted - target[test]) / target[test]) ** 2)
        error = float(np.mean(np.concatenate(errors)))
        if error < best_error:
            best, best_error = alpha, error
    return best
