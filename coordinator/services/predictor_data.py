"""What a device's latency predictor learns from: its LUT and the end-to-end medians of the
subnets measured on it, split into training and held-out subnets.

The split is a pure function of each subnet's id (about a third held out), so every command,
run at any time, agrees on which subnets were never trained on.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from coordinator.services.campaigns import campaigns_by_target, target_campaigns
from coordinator.services.lut_export import DeviceLut
from coordinator.services.targets import Target, pick_target
from coordinator.state import Devices, Imported, Store, is_postgres_url
from ofa.config import SubnetConfig
from ofa.space import FAMILIES, MOBILENET_V3
from ofa.zoo import config_from_json

__all__ = [
    "Measured",
    "device_lut",
    "measured_subnets",
    "target_subnets",
    "SubnetData",
    "split",
    "predictor_path",
    "predictors_folder",
]

HELD_OUT_EVERY = 3


@dataclass(frozen=True)
class Measured:
    """One subnet and the medians of its independent measurements (one per repeat), and
    the agents' peak memory while measuring it, in MB, where they recorded it."""

    config: SubnetConfig
    medians_ms: tuple[float, ...]
    peaks_mb: tuple[float, ...] = ()

    @property
    def median_ms(self) -> float:
        ordered = sorted(self.medians_ms)
        mid = len(ordered) // 2
        return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def device_lut(table: DeviceLut) -> tuple[dict[int, dict[str, float]], str, float, dict]:
    """A collected LUT (`collect_lut`) as `{r: {key: median ms}}`, the supernet family and
    width it was measured at, and its provenance."""
    families = {spec.get("family", MOBILENET_V3.name) for spec in table.provenance["campaigns"]}
    if not families <= set(FAMILIES):
        raise ValueError(
            f"device: the LUT of {table.label!r} is of the {', '.join(sorted(families))} "
            "supernet; latency predictors handle MobileNetV3 and ProxylessNAS LUTs so far"
        )
    widths = {spec["width"] for spec in table.provenance["campaigns"]}
    if len(widths) != 1 or len(families) != 1:
        raise ValueError(
            f"device: LUT results of {table.label!r} span supernets "
            f"{', '.join(sorted(families))} at widths {sorted(widths)}"
        )
    lut: dict[int, dict[str, float]] = {}
    for entry in table.entries:
        lut.setdefault(entry.r, {})[entry.key] = entry.median_ms
    return lut, families.pop(), widths.pop(), table.provenance


def measured_subnets(
    store: Store, label: str, campaigns: list[str] | None = None, target: str | None = None
) -> list[Measured]:
    """Every subnet measured end to end on `label` on one measurement target (see
    `target_subnets`), with its repeat medians."""
    return target_subnets(store, label, campaigns, target).measured


@dataclass(frozen=True)
class SubnetData:
    """A device's end-to-end measurements on one target, and where they came from."""

    target: Target | None  # None: no subnet measured at all (a LUT-only device)
    measured: list[Measured]
    campaigns: list[str]  # the subnet campaigns' ids
    imports: list[str]  # the imports' ids


def target_subnets(
    store: Store, label: str, campaigns: list[str] | None = None, target: str | None = None
) -> SubnetData:
    """The subnets measured on `label` on one measurement target (`target`, a name, where
    there are several): those its subnet campaigns (`campaigns`, default all) measured and,
    unless campaigns are named, those imported for it (`measurements import`). A subnet
    measured by both has both sources' measurements, as repeats."""
    devices = Devices(label=label)
    fleet = campaigns_by_target(store, devices, "subnet", campaigns or ())
    imported: dict[str, list[Imported]] = {}
    for row in [] if campaigns else store.imported(label):
        imported.setdefault(json.loads(row.target)["name"], []).append(row)
    if not fleet and not imported:
        if campaigns:
            target_campaigns(store, devices, "subnet", campaigns)  # says what is missing
        return SubnetData(None, [], [], [])
    name = pick_target(
        set(fleet) | set(imported), target, f"the subnet measurements of label {label!r}"
    )
    chosen = [c.id for c in fleet[name][1]] if name in fleet else []
    medians: dict[str, list[float]] = {}
    peaks: dict[str, list[float]] = {}
    for result in store.item_results(devices, "subnet", chosen) if chosen else []:
        medians.setdefault(result.key, []).append(result.median_ms)
        if result.peak_rss_bytes > 0:
            peaks.setdefault(result.key, []).append(result.peak_rss_bytes / 1e6)
    for row in imported.get(name, []):
        medians.setdefault(row.key, []).append(row.latency_ms)
    configs = {key: config_from_json(key) for key in medians}
    return SubnetData(
        fleet[name][0] if name in fleet else Target.parse(name),
        [
            Measured(config, tuple(medians[key]), tuple(peaks.get(key, ())))
            for key, config in sorted(configs.items())
            # latency predictors learn MobileNetV3 and ProxylessNAS subnets so far
            if isinstance(config, SubnetConfig)
        ],
        chosen,
        sorted({row.import_id for row in imported.get(name, [])}),
    )


def split(measured: list[Measured]) -> tuple[list[Measured], list[Measured]]:
    """(training, held out): a subnet is held out when its id, as a number, is 0 mod 3."""
    held = [m for m in measured if int(m.config.id, 16) % HELD_OUT_EVERY == 0]
    return [m for m in measured if int(m.config.id, 16) % HELD_OUT_EVERY != 0], held


def predictor_path(db: str | Path, label: str, kind: str, target: str) -> Path:
    """Where the coordinator keeps a device's predictor of one kind on one measurement
    target: `<predictors>/<label>/<target>/<kind>.json`."""
    return predictors_folder(db) / label / target / f"{kind}.json"


def predictors_folder(db: str | Path) -> Path:
    """The fleet's predictors folder: beside an SQLite database (which is not opened: a
    damaged one does not matter), or where a PostgreSQL fleet recorded its files."""
    if not is_postgres_url(db):
        return Path(f"{db}.predictors")
    return _recorded_predictors(str(db))


@functools.lru_cache(maxsize=8)
def _recorded_predictors(url: str) -> Path:
    """A PostgreSQL fleet's predictors folder: recorded once, never changed, so asked once
    per process (the status page asks for every label and kind at each refresh)."""
    store = Store(url)
    try:
        return store.folder("predictors")
    finally:
        store.close()
