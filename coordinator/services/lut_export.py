"""Per-device latency lookup tables from campaign results.

Each (resolution, LUT key) gets the median of its repeat medians (the most repeatable
figure), the pooled p10/p90 and the sample count, and how clean its data was: how many
disturbed measurements its jobs had re-measured, and the spread of its repeats. Formats:
OFA's `{r}_lookup_table.yaml` (which the reference code reads unchanged; its `mean` field
carries our median), JSON with provenance, and CSV. Entries the campaigns asked for but did
not measure are reported as missing with the reason (still queued, disturbed on every
attempt, failed, cancelled), never written as zero.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from coordinator.services.campaigns import campaigns_by_target, target_campaigns
from coordinator.services.lut_compare import Table, latency_groups
from coordinator.services.targets import Target
from coordinator.state import Campaign, Devices, ItemJobs, ItemResult, Store
from ofa.nn.precision import CALIBRATION
from ofa.space import MOBILENET_V3

__all__ = [
    "LutEntry",
    "Missing",
    "DeviceLut",
    "collect_lut",
    "lut_groups",
    "write_lut",
    "FORMATS",
    "DRIFT_LIMIT",
]

FORMATS = ("ofa-yaml", "json", "csv")
DRIFT_LIMIT = 0.03  # a result whose reference model moved more than this is flagged


@dataclass
class LutEntry:
    r: int
    key: str
    median_ms: float
    p10_ms: float
    p90_ms: float
    std_ms: float
    n: int
    repeats: int
    drift_flag: bool
    disturbed: int = 0  # disturbed measurements its jobs had (re-measured, not used)
    repeat_spread: float = 0.0  # (max - min) / median of its repeat medians
    disturbed_only: bool = False  # made of disturbed results, asked for explicitly


@dataclass(frozen=True, order=True)
class Missing:
    """An entry asked for but not measured, and why: 'pending' (jobs still queued or
    leased), 'disturbed' (no clean measurement in any attempt), 'failed', 'cancelled', or
    'excluded' (its only results are left out, e.g. of a quarantined agent)."""

    r: int
    key: str
    reason: str


@dataclass
class DeviceLut:
    label: str
    entries: list[LutEntry]
    missing: list[Missing]
    provenance: dict = field(default_factory=dict)


def collect_lut(
    store: Store,
    label: str,
    campaign: str | None = None,
    include_disturbed: bool = False,
    target: str | None = None,
) -> DeviceLut:
    """Aggregate the accepted LUT results measured for device `label` on one measurement
    target (`target`, a target's name, where its campaigns measured several; or those of
    `campaign`); with `include_disturbed`, an entry never measured cleanly is made of its
    disturbed results (and marked `disturbed_only`) rather than left missing."""
    devices = Devices(label=label)
    of, campaigns = target_campaigns(store, devices, "lut", [campaign] if campaign else (), target)
    campaign_ids = [c.id for c in campaigns]
    expected = store.targeted_items(devices, "lut", campaign_ids)
    grouped: dict[tuple[int, str], list[ItemResult]] = {}
    for result in store.item_results(devices, "lut", campaign_ids, include_disturbed):
        grouped.setdefault((_resolution(result.r, result.key), result.key), []).append(result)
    every = [result for results in grouped.values() for result in results]
    _refuse_mixed_settings([c for c in campaigns if c.id in {x.campaign_id for x in every}])
    jobs = store.item_jobs(devices, "lut", campaign_ids)
    entries = []
    for (r, key), results in sorted(grouped.items()):
        samples = np.concatenate([x.samples_ns for x in results]) / 1e6
        medians = np.array([x.median_ms for x in results])
        entries.append(
            LutEntry(
                r,
                key,
                float(np.median([x.median_ms for x in results])),
                float(np.percentile(samples, 10)),
                float(np.percentile(samples, 90)),
                float(samples.std(ddof=1)) if samples.size > 1 else 0.0,
                int(samples.size),
                len(results),
                any(abs(x.drift or 0.0) > DRIFT_LIMIT for x in results),
                jobs[(r, key)].disturbed if (r, key) in jobs else 0,
                float((medians.max() - medians.min()) / np.median(medians)),
                all(x.disturbed for x in results),
            )
        )
    missing = sorted(
        Missing(_resolution(r, key), key, _why_missing(jobs.get((r, key))))
        for r, key in expected - set(grouped)
    )
    provenance = _provenance(store, label, of, every, campaigns)
    provenance["cleanliness"] = {
        "disturbed_remeasured": sum(e.disturbed for e in entries),
        "entries_remeasured": sum(e.disturbed > 0 for e in entries),
        "missing_disturbed": sum(m.reason == "disturbed" for m in missing),
        "disturbed_only": sum(e.disturbed_only for e in entries),
        "median_repeat_spread": float(np.median([e.repeat_spread for e in entries]))
        if entries
        else None,
    }
    return DeviceLut(label, entries, missing, provenance)


def lut_groups(store: Store, label: str) -> tuple[str, list[dict]]:
    """Device `label`'s LUT (its accepted results, pooled as `lut export` pools them) on the
    target of its latest LUT campaign, with that target's name, by group of each dimension
    (`latency_groups`); ValueError while it has no entry."""
    found = campaigns_by_target(store, Devices(label=label), "lut")
    latest = max(found, key=lambda name: max(c.created_at for c in found[name][1]), default=None)
    lut = collect_lut(store, label, target=latest)
    if not lut.entries:
        raise ValueError(f"device: no LUT entry of {label!r} has been measured yet")
    means: dict[int, dict[str, float]] = {}
    for entry in lut.entries:
        means.setdefault(entry.r, {})[entry.key] = entry.median_ms
    return lut.provenance["target"]["name"], latency_groups(Table(label, means))


def _why_missing(jobs: ItemJobs | None) -> str:
    """The reason an entry has no accepted result, from the states of its jobs."""
    states = jobs.states if jobs else {}
    for state, reason in (
        ("queued", "pending"),
        ("leased", "pending"),
        ("disturbed", "disturbed"),
        ("failed", "failed"),
        ("cancelled", "cancelled"),
    ):
        if states.get(state):
            return reason
    return "excluded"


def _resolution(r: int | None, key: str) -> int:
    """A LUT item's resolution; every LUT item is stored with one, so None is a damaged
    database (and would break sorting the entries)."""
    if r is None:
        raise ValueError(f"lut: item {key} has no resolution; the database is damaged")
    return r


def _refuse_mixed_settings(campaigns: list[Campaign]) -> None:
    """Pooling results measured with different settings (threads, say) would give a table
    of no device state at all."""
    settings: dict[str, list[str]] = {}
    for campaign in campaigns:
        spec = json.loads(campaign.spec)
        supernet = {"width": spec["width"], "family": spec.get("family", MOBILENET_V3.name)}
        key = json.dumps({"options": spec["options"], **supernet}, sort_keys=True)
        settings.setdefault(key, []).append(campaign.id)
    if len(settings) > 1:
        groups = "; ".join(f"{', '.join(ids)}: {json.loads(k)}" for k, ids in settings.items())
        raise ValueError(
            f"campaign: these campaigns measured with different settings ({groups}); "
            "export one with --campaign"
        )


def _provenance(
    store: Store, label: str, target: Target, results: list[ItemResult], campaigns: list[Campaign]
) -> dict:
    """Where the table came from: the target (with an int8 target's calibration), agents,
    runtimes and campaigns."""
    agents = {result.agent_id for result in results}
    devices = [
        {"agent_id": a["id"], "device": a["device"], "threads": a["threads"]}
        for a in store.list_agents()
        if a["id"] in agents
    ]
    specs = []
    for campaign in campaigns:
        spec = json.loads(campaign.spec)
        specs.append(
            {
                "id": campaign.id,
                "name": campaign.name,
                "started_at": campaign.started_at,
                "threads": spec["options"]["threads"],
                "repeats": spec["repeats"],
                "width": spec["width"],
                "family": spec.get("family", MOBILENET_V3.name),
                "settings": spec["options"],
            }
        )
    runtimes = sorted({result.runtime_versions for result in results})
    return {
        "device_label": label,
        "target": target.to_dict()
        | ({"calibration": CALIBRATION} if target.precision == "int8" else {}),
        "agents": devices,
        "runtime_versions": [json.loads(r) for r in runtimes],
        "campaigns": specs,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "value": "median of repeat medians, ms",
    }


def write_lut(lut: DeviceLut, folder: Path, fmt: str) -> list[Path]:
    """Write `lut` into `folder` in format `fmt`; returns the files written."""
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    folder.mkdir(parents=True, exist_ok=True)
    by_r: dict[int, list[LutEntry]] = {}
    for entry in lut.entries:
        by_r.setdefault(entry.r, []).append(entry)
    if fmt == "ofa-yaml":
        paths = []
        for r, entries in sorted(by_r.items()):
            table = {e.key: {"count": e.n, "mean": e.median_ms, "std": e.std_ms} for e in entries}
            path = folder / f"{r}_lookup_table.yaml"
            path.write_text(yaml.safe_dump(table, sort_keys=True))
            paths.append(path)
        return paths
    if fmt == "json":
        path = folder / f"{lut.label}_lut.json"
        path.write_text(
            json.dumps(
                {
                    "provenance": lut.provenance,
                    "missing": [{"r": m.r, "key": m.key, "reason": m.reason} for m in lut.missing],
                    "tables": {
                        str(r): {
                            e.key: {
                                "median_ms": e.median_ms,
                                "p10_ms": e.p10_ms,
                                "p90_ms": e.p90_ms,
                                "std_ms": e.std_ms,
                                "n": e.n,
                                "repeats": e.repeats,
                                "drift_flag": e.drift_flag,
                                "disturbed": e.disturbed,
                                "repeat_spread": e.repeat_spread,
                                "disturbed_only": e.disturbed_only,
                            }
                            for e in entries
                        }
                        for r, entries in sorted(by_r.items())
                    },
                },
                indent=2,
            )
        )
        return [path]
    path = folder / f"{lut.label}_lut.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "r",
                "key",
                "median_ms",
                "p10_ms",
                "p90_ms",
                "std_ms",
                "n",
                "repeats",
                "drift_flag",
                "disturbed",
                "repeat_spread",
                "disturbed_only",
            ]
        )
        for e in lut.entries:
            writer.writerow(
                [
                    e.r,
                    e.key,
                    f"{e.median_ms:.6f}",
                    f"{e.p10_ms:.6f}",
                    f"{e.p90_ms:.6f}",
                    f"{e.std_ms:.6f}",
                    e.n,
                    e.repeats,
                    int(e.drift_flag),
                    e.disturbed,
                    f"{e.repeat_spread:.6f}",
                    int(e.disturbed_only),
                ]
            )
    return [path]
