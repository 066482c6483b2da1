"""Per-device latency lookup tables from campaign results.

Each (resolution, LUT key) gets the median of its repeat medians (the most repeatable
figure), the pooled p10/p90 and the sample count. Formats: OFA's `{r}_lookup_table.yaml`
(which the reference code reads unchanged; its `mean` field carries our median), JSON with
provenance, and CSV. Entries the campaigns asked for but did not measure are reported as
missing, never written as zero.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from coordinator.state import Store

__all__ = ["LutEntry", "DeviceLut", "collect_lut", "write_lut", "FORMATS", "DRIFT_LIMIT"]

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


@dataclass
class DeviceLut:
    label: str
    entries: list[LutEntry]
    missing: list[tuple[int, str]]
    provenance: dict = field(default_factory=dict)


def collect_lut(store: Store, label: str, campaign: str | None = None) -> DeviceLut:
    """Aggregate the accepted LUT results measured for device `label`."""
    target = f"label:{label}"
    where = "cj.target=? AND ci.kind='lut'" + (" AND cj.campaign_id=?" if campaign else "")
    params = (target, campaign) if campaign else (target,)
    expected = {(row[0], row[1]) for row in store.db.execute(
        f"SELECT DISTINCT ci.r, ci.key FROM campaign_jobs cj JOIN campaign_items ci ON "
        f"ci.campaign_id=cj.campaign_id AND ci.item=cj.item WHERE {where}", params)}
    if not expected:
        raise ValueError(f"device: no LUT campaign has targeted label {label!r}"
                         + (f" in campaign {campaign}" if campaign else ""))
    rows = store.db.execute(
        f"SELECT ci.r, ci.key, res.median_ms, res.samples, res.drift, res.agent_id, "
        f"res.runtime_versions, cj.campaign_id FROM results res "
        f"JOIN campaign_jobs cj ON cj.job_id=res.job_id "
        f"JOIN campaign_items ci ON ci.campaign_id=cj.campaign_id AND ci.item=cj.item "
        f"WHERE {where} AND res.accepted=1 AND res.status='ok' ORDER BY res.id", params)
    grouped: dict[tuple[int, str], list] = {}
    agents, runtimes, campaigns = set(), set(), set()
    for row in rows:
        grouped.setdefault((row["r"], row["key"]), []).append(row)
        agents.add(row["agent_id"])
        runtimes.add(row["runtime_versions"])
        campaigns.add(row["campaign_id"])
    _refuse_mixed_settings(store, campaigns)
    entries = []
    for (r, key), results in sorted(grouped.items()):
        samples = np.concatenate([np.frombuffer(x["samples"], dtype="<i8") for x in results]) / 1e6
        entries.append(LutEntry(
            r, key, float(np.median([x["median_ms"] for x in results])),
            float(np.percentile(samples, 10)), float(np.percentile(samples, 90)),
            float(samples.std(ddof=1)) if samples.size > 1 else 0.0, int(samples.size),
            len(results), any(abs(x["drift"] or 0.0) > DRIFT_LIMIT for x in results)))
    missing = sorted(expected - set(grouped))
    return DeviceLut(label, entries, missing, _provenance(store, label, agents, runtimes, campaigns))


def _refuse_mixed_settings(store: Store, campaigns: set[str]) -> None:
    """Pooling results measured with different settings (threads, say) would give a table
    of no device state at all."""
    settings: dict[str, list[str]] = {}
    for campaign_id in sorted(campaigns):
        spec = json.loads(store.db.execute("SELECT spec FROM campaigns WHERE id=?",
                                           (campaign_id,)).fetchone()[0])
        key = json.dumps({"options": spec["options"], "width": spec["width"]}, sort_keys=True)
        settings.setdefault(key, []).append(campaign_id)
    if len(settings) > 1:
        groups = "; ".join(f"{', '.join(ids)}: {json.loads(k)['options']}"
                           for k, ids in settings.items())
        raise ValueError(f"campaign: these campaigns measured with different settings ({groups}); "
                         "export one with --campaign")


def _provenance(store: Store, label: str, agents: set, runtimes: set, campaigns: set) -> dict:
    devices = [{"agent_id": a["id"], "device": a["device"], "threads": a["threads"]}
               for a in store.list_agents() if a["id"] in agents]
    specs = []
    for campaign_id in sorted(campaigns):
        row = store.db.execute("SELECT name, spec, started_at FROM campaigns WHERE id=?",
                               (campaign_id,)).fetchone()
        spec = json.loads(row["spec"])
        specs.append({"id": campaign_id, "name": row["name"], "started_at": row["started_at"],
                      "threads": spec["options"]["threads"], "repeats": spec["repeats"],
                      "width": spec["width"], "settings": spec["options"]})
    return {"device_label": label, "agents": devices,
            "runtime_versions": [json.loads(r) for r in sorted(runtimes)],
            "campaigns": specs, "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "value": "median of repeat medians, ms"}


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
        path.write_text(json.dumps({
            "provenance": lut.provenance,
            "missing": [{"r": r, "key": key} for r, key in lut.missing],
            "tables": {str(r): {e.key: {"median_ms": e.median_ms, "p10_ms": e.p10_ms,
                                        "p90_ms": e.p90_ms, "std_ms": e.std_ms, "n": e.n,
                                        "repeats": e.repeats, "drift_flag": e.drift_flag}
                                for e in entries} for r, entries in sorted(by_r.items())}},
            indent=2))
        return [path]
    path = folder / f"{lut.label}_lut.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["r", "key", "median_ms", "p10_ms", "p90_ms", "std_ms", "n", "repeats",
                         "drift_flag"])
        for e in lut.entries:
            writer.writerow([e.r, e.key, f"{e.median_ms:.6f}", f"{e.p10_ms:.6f}",
                             f"{e.p90_ms:.6f}", f"{e.std_ms:.6f}", e.n, e.repeats,
                             int(e.drift_flag)])
    return [path]
