"""What a subnet costs besides latency, for whole batches of configs at once: MACs and
parameters (sums over its layers), the largest activation working set (a maximum over its
layers), and its peak memory on a device, fit to the device's measured peak memory.

Peak memory = base + per_parameter * parameters + per_activation * batch * activations
(millions each; MB): the runtime and the process (base), the weights, and the largest set of
activations alive at once. The coefficients absorb bytes per value, the runtime's copies of
the weights and its allocator's rounding; the fit's RMSE says how far to trust it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ofa.batch import ConfigBatch
from ofa.config import SubnetConfig
from ofa.latency_model import BlockTable
from ofa.plan import layer_plan, space_lut_specs
from ofa.space import MOBILENET_V3

__all__ = ["resource_table", "ResourceFigures", "MemoryModel", "MIN_MEMORY_SUBNETS"]

MIN_MEMORY_SUBNETS = 8  # measured subnets a memory model needs: three coefficients, and a check


def resource_table(
    figure: str, resolutions: Sequence[int], width: float, family: str = MOBILENET_V3.name
) -> BlockTable:
    """Per resolution, each elastic block's `figure` ("macs", "params" or "activations", a
    LayerSpec method) for every (kernel, expand), and the fixed layers' figure: their sum,
    or for "activations" (a maximum over layers, not a sum) their largest."""
    table = BlockTable.from_lut(
        {
            r: {s.lut_key: float(getattr(s, figure)()) for s in space_lut_specs(r, width, family)}
            for r in resolutions
        },
        width,
        family,
    )
    if figure != "activations":
        return table
    fixed, elastic = [], table.blocks.shape[1]
    for r in table.resolutions:
        plan = layer_plan(SubnetConfig.largest(r=int(r), w=width, family=family))
        fixed.append(max(spec.activations() for spec in plan[:2] + plan[2 + elastic :]))
    return dataclasses.replace(table, fixed=np.array(fixed, float))


@dataclass(frozen=True)
class ResourceFigures:
    """Parameters and largest activation working set (per image) of batches of configs,
    in millions, for the given resolutions and width."""

    params: BlockTable
    activations: BlockTable

    @classmethod
    def of(
        cls, resolutions: Sequence[int], width: float, family: str = MOBILENET_V3.name
    ) -> ResourceFigures:
        return cls(
            resource_table("params", resolutions, width, family),
            resource_table("activations", resolutions, width, family),
        )

    def features(self, batch: ConfigBatch) -> np.ndarray:
        """(n, 2): parameters and largest activation set, in millions."""
        rows = self.activations.rows(batch.r)
        largest = np.maximum(
            self.activations.fixed[rows], self.activations.block_latencies(batch).max(axis=1)
        )
        return np.column_stack([self.params.lut_sum(batch), largest]) / 1e6


@dataclass(frozen=True)
class MemoryModel:
    """A device's peak memory in MB for one measurement target (see the module docstring):
    fit on `n` measured subnets, with the fit's RMSE."""

    base_mb: float
    per_param_mb: float  # per million parameters
    per_activation_mb: float  # per million activation values (times the batch)
    batch: int
    rmse_mb: float
    n: int
    resolutions: tuple[int, int] = (0, 0)  # the range of the measured subnets' resolutions

    def predict(self, figures: ResourceFigures, batch: ConfigBatch) -> np.ndarray:
        params, activations = figures.features(batch).T
        return (
            self.base_mb
            + self.per_param_mb * params
            + self.per_activation_mb * self.batch * activations
        )

    @classmethod
    def fit(
        cls, configs: Sequence[SubnetConfig], peak_mb: Sequence[float], batch: int
    ) -> MemoryModel:
        """Least squares on the measured peaks; a coefficient the data make negative (noise:
        memory never shrinks with size) is dropped and the rest refit."""
        if len(configs) < MIN_MEMORY_SUBNETS:
            raise ValueError(
                f"peak memory: {len(configs)} measured subnets record it, at least "
                f"{MIN_MEMORY_SUBNETS} are needed"
            )
        supernets = sorted({c.supernet for c in configs})
        if len(supernets) > 1:
            raise ValueError(
                f"peak memory: fit on one supernet at a time, got {', '.join(supernets)}"
            )
        resolutions = sorted({c.r for c in configs})
        figures = ResourceFigures.of(resolutions, configs[0].w, configs[0].family)
        x = figures.features(ConfigBatch.from_configs(configs)) * [1.0, batch]
        y = np.asarray(peak_mb, float)
        columns = [0, 1]
        while True:
            design = np.column_stack([np.ones(len(y)), x[:, columns]])
            coef = np.linalg.lstsq(design, y, rcond=None)[0]
            negative = [c for c, v in zip(columns, coef[1:], strict=True) if v < 0]
            if not negative:
                break
            columns = [c for c in columns if c not in negative]
        per = dict(zip(columns, coef[1:], strict=True))
        rmse = float(np.sqrt(np.mean((design @ coef - y) ** 2)))
        return cls(
            float(coef[0]),
            float(per.get(0, 0.0)),
            float(per.get(1, 0.0)),
            batch,
            rmse,
            len(y),
            (resolutions[0], resolutions[-1]),
        )
