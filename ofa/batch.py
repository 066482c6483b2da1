"""Many subnet configs as numpy arrays, for predictors and search that work on whole
populations at once (no Python loop per config)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from ofa import space
from ofa.config import SubnetConfig, check_int, check_width, show

__all__ = ["ConfigBatch", "check_array"]


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
    """`n` configs of one supernet (`family`, width `w`): choice indices `ks` and `e`
    (n, blocks) into the family's kernel and expand choices, depths `d` (n, stages),
    resolutions `r` (n,). MobileNetV3 has 20 blocks, ProxylessNAS 21 (its tail block always
    runs).

    Construction validates like SubnetConfig (each array once, vectorised), so a depth of 5,
    a kernel index of 9 or a NaN resolution is refused naming the field, row and column,
    and stores canonical dtypes (int8 choices, int32 resolutions)."""

    ks: np.ndarray
    e: np.ndarray
    d: np.ndarray
    r: np.ndarray
    w: float = 1.0
    family: str = space.MOBILENET_V3.name

    def __post_init__(self) -> None:
        family = space.family_named(self.family)
        ks = check_array(
            "ks",
            self.ks,
            None,
            family.n_blocks,
            np.int8,
            range(len(family.kernel_choices)),
            note=f" (indices into {family.kernel_choices})",
        )
        n = len(ks)
        checked = {
            "ks": ks,
            "e": check_array(
                "e",
                self.e,
                n,
                family.n_blocks,
                np.int8,
                range(len(family.expand_choices)),
                note=f" (indices into {family.expand_choices})",
            ),
            "d": check_array("d", self.d, n, family.n_stages, np.int8, family.depth_choices),
            "r": check_array(
                "r", self.r, n, None, np.int32, bounds=(space.MIN_RESOLUTION, space.MAX_RESOLUTION)
            ),
            "w": check_width(self.w, family),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    @property
    def family_space(self) -> space.Family:
        return space.FAMILIES[self.family]

    def derive(self, ks: np.ndarray, e: np.ndarray, d: np.ndarray, r: np.ndarray) -> ConfigBatch:
        """A batch of this one's supernet from values taken from checked batches or from the
        space's own choices (the search's moves, mutations and crossovers), in the canonical
        dtypes, unchecked: the search derives thousands of batches a second, and checking
        each cost it a tenth of its time. Anything from outside goes through the
        constructor."""
        batch = object.__new__(type(self))
        for name, value, dtype in (("ks", ks, np.int8), ("e", e, np.int8), ("d", d, np.int8)):
            object.__setattr__(batch, name, value.astype(dtype, copy=False))
        object.__setattr__(batch, "r", r.astype(np.int32, copy=False))
        object.__setattr__(batch, "w", self.w)
        object.__setattr__(batch, "family", self.family)
        return batch

    @classmethod
    def from_configs(
        cls, configs: Sequence[SubnetConfig], family: str = space.MOBILENET_V3.name
    ) -> ConfigBatch:
        """Configs of one supernet; `family` is that of an empty list."""
        families = {c.family for c in configs}
        widths = {c.w for c in configs}
        if len(families) > 1:
            raise ValueError(f"family: a batch holds one family, got {sorted(families)}")
        if len(widths) > 1:
            raise ValueError(f"w: a batch holds one width, got {sorted(widths)}")
        f = space.family_named(families.pop() if families else family)
        kernel = {k: i for i, k in enumerate(f.kernel_choices)}
        expand = {x: i for i, x in enumerate(f.expand_choices)}
        n = len(configs)
        return cls(
            ks=np.array([[kernel[k] for k in c.ks] for c in configs], np.int8).reshape(
                n, f.n_blocks
            ),
            e=np.array([[expand[x] for x in c.e] for c in configs], np.int8).reshape(n, f.n_blocks),
            d=np.array([c.d for c in configs], np.int8).reshape(n, f.n_stages),
            r=np.array([c.r for c in configs], np.int32),
            w=widths.pop() if widths else f.width_choices[0],
            family=f.name,
        )

    def __len__(self) -> int:
        return len(self.r)

    @cached_property
    def active(self) -> np.ndarray:
        """(n, blocks) bool: which elastic blocks run (a tail block always does). Computed
        once per batch: the search asks for it ~20 times per batch it scores."""
        f = self.family_space
        position = np.arange(f.n_stages * f.max_depth) % f.max_depth
        active = position < np.repeat(self.d, f.max_depth, axis=1)
        if f.tail_blocks:
            active = np.hstack([active, np.ones((len(self), f.tail_blocks), bool)])
        active.flags.writeable = False  # shared by every caller
        return active

    def config(self, i: int) -> SubnetConfig:
        f = self.family_space
        return SubnetConfig(
            ks=tuple(f.kernel_choices[k] for k in self.ks[i]),
            e=tuple(f.expand_choices[x] for x in self.e[i]),
            d=tuple(self.d[i].tolist()),
            r=int(self.r[i]),
            w=self.w,
            family=self.family,
        )
