"""Many subnet configs as numpy arrays, for predictors and search that work on whole
populations at once (no Python loop per config)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ofa import space
from ofa.config import SubnetConfig

__all__ = ["ConfigBatch"]

_KERNEL_INDEX = {k: i for i, k in enumerate(space.KERNEL_CHOICES)}
_EXPAND_INDEX = {e: i for i, e in enumerate(space.EXPAND_CHOICES)}


@dataclass(frozen=True)
class ConfigBatch:
    """`n` configs: choice indices `ks` and `e` (n, 20) into KERNEL_CHOICES/EXPAND_CHOICES,
    depths `d` (n, 5), resolutions `r` (n,). All configs share one width `w`."""

    ks: np.ndarray
    e: np.ndarray
    d: np.ndarray
    r: np.ndarray
    w: float = 1.0

    @classmethod
    def from_configs(cls, configs: Sequence[SubnetConfig]) -> "ConfigBatch":
        widths = {c.w for c in configs}
        if len(widths) > 1:
            raise ValueError(f"w: a batch holds one width, got {sorted(widths)}")
        return cls(ks=np.array([[_KERNEL_INDEX[k] for k in c.ks] for c in configs], np.int8),
                   e=np.array([[_EXPAND_INDEX[x] for x in c.e] for c in configs], np.int8),
                   d=np.array([c.d for c in configs], np.int8),
                   r=np.array([c.r for c in configs], np.int32),
                   w=widths.pop() if widths else 1.0)

    def __len__(self) -> int:
        return len(self.r)

    @property
    def active(self) -> np.ndarray:
        """(n, 20) bool: which elastic blocks run."""
        position = np.arange(space.N_BLOCKS) % space.MAX_DEPTH
        depth = np.repeat(self.d, space.MAX_DEPTH, axis=1)
        return position < depth

    def config(self, i: int) -> SubnetConfig:
        return SubnetConfig(ks=[space.KERNEL_CHOICES[k] for k in self.ks[i]],
                            e=[space.EXPAND_CHOICES[x] for x in self.e[i]],
                            d=self.d[i].tolist(), r=int(self.r[i]), w=self.w)
