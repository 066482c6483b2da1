"""Many subnet configs as numpy arrays, for predictors and search that work on whole
populations at once (no Python loop per config)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ofa import space
from ofa.config import SubnetConfig, check_int, check_width, show

__all__ = ["ConfigBatch", "check_array"]

_KERNEL_INDEX = {k: i for i, k in enumerate(space.KERNEL_CHOICES)}
_EXPAND_INDEX = {e: i for i, e in enumerate(space.EXPAND_CHOICES)}


def check_array(
    field: str,
    values: Any,
    n: int | None,
    columns: int | None,
    dtype: type,
    allowed: Sequence[int] | None = None,
    bounds: tuple[int, int] | None = None,
    note: str = "",
) -> np.ndarray:
    """`values` as a `dtype` array of shape (n, columns), or (n,) when `columns` is None,
    every entry in `allowed` or `bounds`. One vectorised pass; the first bad entry is named
    with SubnetConfig's message (`d[3][2]: expected one of 2, 3, 4, got 5`) and `note`."""
    try:
        array = np.asarray(values)
    except ValueError:  # ragged nested lists
        raise ValueError(f"{field}: expected a rectangular array, got {show(values)}") from None
    shape = "(n,)" if columns is None else f"(n, {columns})"
    if array.ndim != (1 if columns is None else 2) or (columns and array.shape[1] != columns):
        raise ValueError(f"{field}: expected an array of shape {shape}, got shape {array.shape}")
    if n is not None and len(array) != n:
        raise ValueError(f"{field}: expected {n} rows (one per config, as in ks), got {len(array)}")
    if array.dtype.kind in "iuf":
        if allowed is not None:
            low, high = min(allowed), max(allowed)
        elif bounds is not None:
            low, high = bounds
        else:
            raise TypeError("check_array: give `allowed` or `bounds`")
        ok = (array >= low) & (array <= high)  # False for NaN
        if array.dtype.kind == "f":
            ok &= array == np.round(array)
        if allowed is not None and list(allowed) != list(range(low, high + 1)):
            ok &= np.isin(array, allowed)
        suspects = [tuple(int(i) for i in np.argwhere(~ok)[0])] if not ok.all() else []
    else:  # bool, strings, objects: rare, checked entry by entry
        suspects = list(np.ndindex(array.shape))
    for where in suspects:
        entry = field if columns is None else f"{field}[{where[0]}]"
        value = array[where]
        try:
            check_int(
                entry,
                value.item() if isinstance(value, np.generic) else value,
                allowed,
                bounds,
                index=where[-1],
            )
        except ValueError as exc:
            raise ValueError(f"{exc}{note}") from None
    return array.astype(dtype, copy=False)


@dataclass(frozen=True)
class ConfigBatch:
    """`n` configs: choice indices `ks` and `e` (n, 20) into KERNEL_CHOICES/EXPAND_CHOICES,
    depths `d` (n, 5), resolutions `r` (n,). All configs share one width `w`.

    Construction validates like SubnetConfig (each array once, vectorised), so a depth of 5,
    a kernel index of 9 or a NaN resolution is refused naming the field, row and column,
    and stores canonical dtypes (int8 choices, int32 resolutions)."""

    ks: np.ndarray
    e: np.ndarray
    d: np.ndarray
    r: np.ndarray
    w: float = 1.0

    def __post_init__(self) -> None:
        ks = check_array(
            "ks",
            self.ks,
            None,
            space.N_BLOCKS,
            np.int8,
            range(len(space.KERNEL_CHOICES)),
            note=f" (indices into {space.KERNEL_CHOICES})",
        )
        n = len(ks)
        checked = {
            "ks": ks,
            "e": check_array(
                "e",
                self.e,
                n,
                space.N_BLOCKS,
                np.int8,
                range(len(space.EXPAND_CHOICES)),
                note=f" (indices into {space.EXPAND_CHOICES})",
            ),
            "d": check_array("d", self.d, n, space.N_STAGES, np.int8, space.DEPTH_CHOICES),
            "r": check_array(
                "r", self.r, n, None, np.int32, bounds=(space.MIN_RESOLUTION, space.MAX_RESOLUTION)
            ),
            "w": check_width(self.w),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @classmethod
    def derived(
        cls, ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray, w: float
    ) -> ConfigBatch:
        """A batch of values taken from checked batches or from the space's own choices (the
        search's moves, mutations and crossovers), in the canonical dtypes, unchecked: the
        search derives thousands of batches a second, and checking each cost it a tenth of
        its time. Anything from outside goes through the constructor."""
        batch = object.__new__(cls)
        for name, value, dtype in (("ks", ks, np.int8), ("e", e, np.int8), ("d", d, np.int8)):
            object.__setattr__(batch, name, value.astype(dtype, copy=False))
        object.__setattr__(batch, "r", r.astype(np.int32, copy=False))
        object.__setattr__(batch, "w", w)
        return batch

    @classmethod
    def from_configs(cls, configs: Sequence[SubnetConfig]) -> ConfigBatch:
        other = next((c for c in configs if c.family != space.MOBILENET_V3.name), None)
        if other is not None:
            raise ValueError(
                f"family: predictors and search handle MobileNetV3 subnets only so far; "
                f"{other.id} is a {other.family_space.title} subnet"
            )
        widths = {c.w for c in configs}
        if len(widths) > 1:
            raise ValueError(f"w: a batch holds one width, got {sorted(widths)}")
        n = len(configs)
        return cls(
            ks=np.array([[_KERNEL_INDEX[k] for k in c.ks] for c in configs], np.int8).reshape(
                n, space.N_BLOCKS
            ),
            e=np.array([[_EXPAND_INDEX[x] for x in c.e] for c in configs], np.int8).reshape(
                n, space.N_BLOCKS
            ),
            d=np.array([c.d for c in configs], np.int8).reshape(n, space.N_STAGES),
            r=np.array([c.r for c in configs], np.int32),
            w=widths.pop() if widths else 1.0,
        )

    def __len__(self) -> int:
        return len(self.r)

    @property
    def active(self) -> np.ndarray:
        """(n, 20) bool: which elastic blocks run."""
        position = np.arange(space.N_BLOCKS) % space.MAX_DEPTH
        depth = np.repeat(self.d, space.MAX_DEPTH, axis=1)
        return position < depth

    def config(self, i: int) -> SubnetConfig:
        return SubnetConfig(
            ks=tuple(space.KERNEL_CHOICES[k] for k in self.ks[i]),
            e=tuple(space.EXPAND_CHOICES[x] for x in self.e[i]),
            d=tuple(self.d[i].tolist()),
            r=int(self.r[i]),
            w=self.w,
        )
