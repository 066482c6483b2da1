"""`ofa-coord results export`: every result of a campaign with its raw samples, statistics
and device state, as CSV or JSON lines. Both are strict: a non-finite number (a NaN a sensor
reported, say) is written as null in JSON and as an empty CSV cell, never as `NaN`."""

from __future__ import annotations

import csv
import json
from typing import IO, Iterator

import numpy as np

from coordinator import strict_json
from coordinator.state import Store

__all__ = ["campaign_results", "write_results", "FORMATS"]

FORMATS = ("csv", "jsonl")
_COLUMNS = ("campaign", "target", "agent_id", "kind", "key", "r", "w", "repeat", "status",
            "accepted", "late", "message", "n", "median_ms", "mean_ms", "std_ms", "p10_ms",
            "p90_ms", "p99_ms", "cv", "stop_reason", "session_create_ns", "first_run_ns",
            "warmup_runs", "warmup_ns", "peak_rss_bytes", "drift", "drift_check", "received_at",
            "runtime_versions", "telemetry_before", "telemetry_after", "samples_ns")
# drift_check: the reference model's baseline and current medians behind `drift`, to audit it
_JSON_COLUMNS = ("drift_check", "runtime_versions", "telemetry_before", "telemetry_after")


def campaign_results(store: Store, campaign_id: str) -> Iterator[dict]:
    rows = store.db.execute(
        "SELECT cj.campaign_id AS campaign, cj.target, cj.repeat, ci.kind, ci.key, ci.r, ci.w, "
        "res.* FROM results res JOIN campaign_jobs cj ON cj.job_id=res.job_id "
        "JOIN campaign_items ci ON ci.campaign_id=cj.campaign_id AND ci.item=cj.item "
        "WHERE cj.campaign_id=? ORDER BY res.id", (campaign_id,))
    for row in rows:
        record = {column: row[column] for column in _COLUMNS if column != "samples_ns"}
        for column in _JSON_COLUMNS:
            record[column] = json.loads(record[column]) if record[column] else {}
        record["samples_ns"] = np.frombuffer(row["samples"] or b"", dtype="<i8").tolist()
        yield record


def write_results(records: Iterator[dict], out: IO[str], fmt: str) -> int:
    """Write records to `out`; returns how many were written."""
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    count = 0
    if fmt == "jsonl":
        for record in records:
            out.write(strict_json.dumps(record) + "\n")
            count += 1
        return count
    writer = csv.DictWriter(out, fieldnames=_COLUMNS)
    writer.writeheader()
    for record in map(strict_json.finite, records):
        for column in _JSON_COLUMNS:
            record[column] = strict_json.dumps(record[column], sort_keys=True)
        record["samples_ns"] = " ".join(map(str, record["samples_ns"]))
        writer.writerow(record)
        count += 1
    return count
