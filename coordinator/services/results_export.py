"""`ofa-coord results export`: every result of a campaign with its raw samples, statistics
and device state, as CSV or JSON lines. Both are strict: a non-finite number (a NaN a sensor
reported, say) is written as null in JSON and as an empty CSV cell, never as `NaN`. Per-node
profiles go to JSON lines only: one is 20 KB or more, past what CSV readers take in a cell
(Python's csv module: 128 KiB; spreadsheets: 32,767 characters)."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import IO

from agent import strict_json
from coordinator.services.progress import OnProgress, quiet
from coordinator.state import CAMPAIGN_RESULT_KEYS, JSON_RESULT_FIELDS, RESULT_FIELDS, Store

__all__ = ["campaign_results", "write_results", "FORMATS"]

FORMATS = ("csv", "jsonl")
_CSV_LEFT_OUT = "profile"
_COLUMNS = tuple(
    c for c in CAMPAIGN_RESULT_KEYS + RESULT_FIELDS + ("samples_ns",) if c != _CSV_LEFT_OUT
)


def campaign_results(store: Store, campaign_id: str) -> Iterator[dict]:
    """Every result of the campaign, in the order they arrived (objects decoded, samples
    as a list of ints)."""
    return store.campaign_results(campaign_id)


def write_results(
    records: Iterator[dict], out: IO[str], fmt: str, progress: OnProgress = quiet
) -> int:
    """Write records to `out`; returns how many were written. `progress` hears of each (a
    large campaign has hundreds of thousands)."""
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {fmt!r}")
    count = 0
    if fmt == "jsonl":
        for record in records:
            out.write(strict_json.dumps(record) + "\n")
            count += 1
            progress("writing results", count, None)
        return count
    writer = csv.DictWriter(out, fieldnames=_COLUMNS)
    writer.writeheader()
    for record in map(strict_json.finite, records):
        del record[_CSV_LEFT_OUT]
        for column in JSON_RESULT_FIELDS:
            if column != _CSV_LEFT_OUT:
                record[column] = strict_json.dumps(record[column], sort_keys=True)
        record["samples_ns"] = " ".join(map(str, record["samples_ns"]))
        writer.writerow(record)
        count += 1
        progress("writing results", count, None)
    return count
