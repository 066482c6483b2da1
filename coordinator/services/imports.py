"""End-to-end latencies measured elsewhere, imported as a device's data.

`ofa-coord measurements import --device NAME --target T --file F` reads JSONL lines
`{"config": {...}, "latency_ms": x, ...}` or CSV with a `config` column (the subnet as JSON)
and a `latency_ms` column; any other key or column is kept as the line's metadata. Every
line is checked before anything is stored: the first bad one is refused with its line
number and field, and nothing is imported. Imported subnets then count as the device's
end-to-end measurements on that target exactly as the fleet's do (`measured_subnets`): a
subnet on several lines has several measurements, as repeats do.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from coordinator.services.targets import Target
from coordinator.state import LABEL, ImportedLine, Store
from ofa.config import SubnetConfig, show
from ofa.jsonfile import parse

__all__ = ["ImportSummary", "read_measurements", "import_measurements", "MAX_LINES"]

MAX_LINES = 1_000_000
MAX_LINE_CHARS = 65_536  # a config is ~300 characters; metadata beyond this is not metadata
MAX_FILE_BYTES = 256 * 2**20  # read whole: a million 250-byte lines fit
MAX_LATENCY_MS = 3_600_000.0  # an hour per inference is a unit mistake, not a latency
REQUIRED = ("config", "latency_ms")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class ImportSummary:
    import_id: str
    label: str
    target: str
    lines: int
    subnets: int


def _line(data: object, where: str, number: int, from_csv: bool = False) -> ImportedLine:
    """One line's measurement, checked; ValueError naming `where` and the field. A CSV
    cell's latency is text (a plain decimal number); a JSON line's must be a number."""
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected an object with {' and '.join(REQUIRED)}")
    for name in REQUIRED:
        if name not in data:
            raise ValueError(f"{where}: {name}: missing")
    config = data["config"]
    if isinstance(config, str):  # CSV cells, or a JSONL writer that nested JSON as text
        config = parse(config, f"{where}: config")
    if not isinstance(config, dict):
        raise ValueError(f"{where}: config: expected a subnet config object, got {show(config)}")
    try:
        subnet = SubnetConfig.from_dict(config)
    except ValueError as exc:
        raise ValueError(f"{where}: config.{exc}") from None
    latency = data["latency_ms"]
    if from_csv and isinstance(latency, str) and _DECIMAL.fullmatch(latency.strip()):
        latency = float(latency)
    if isinstance(latency, bool) or not isinstance(latency, (int, float)):
        raise ValueError(f"{where}: latency_ms: expected a number, got {show(latency)}")
    # in this order: an integer of 400 digits is no float, and isfinite would overflow
    if not (0 < latency <= MAX_LATENCY_MS and math.isfinite(latency)):
        raise ValueError(
            f"{where}: latency_ms: expected a finite number of milliseconds in "
            f"(0, {MAX_LATENCY_MS:g}], got {show(latency)}"
        )
    metadata = {k: v for k, v in data.items() if k not in REQUIRED}
    try:
        text = json.dumps(metadata, allow_nan=False, sort_keys=True)
    except ValueError:
        raise ValueError(f"{where}: metadata: expected finite numbers (NaN or inf found)") from None
    return ImportedLine(number, subnet.to_json(), float(latency), text)


def read_measurements(path: str | Path) -> tuple[list[ImportedLine], str]:
    """Every measurement in the file (JSONL, or CSV when its first line is a header naming
    `config` and `latency_ms`), checked, and the sha256 of the bytes they were read from;
    ValueError `file:line: field: ...` for the first bad one."""
    try:
        size = Path(path).stat().st_size
        if size > MAX_FILE_BYTES:
            raise ValueError(f"{path}: {size:,} bytes; at most {MAX_FILE_BYTES:,} per import")
        data = Path(path).read_bytes()
        text = data.decode("utf-8-sig")  # a byte-order mark, as spreadsheets write, is dropped
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if len(lines) > MAX_LINES:
        raise ValueError(f"{path}: {len(lines):,} lines; at most {MAX_LINES:,} per import")
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_LINE_CHARS:
            raise ValueError(
                f"{path}:{number}: the line has {len(line)} characters; at most {MAX_LINE_CHARS}"
            )
    first = next((line for line in lines if line.strip()), "")
    if first.lstrip().startswith("{"):
        measured = [
            _line(parse(line, f"{path}:{number}"), f"{path}:{number}", number)
            for number, line in enumerate(lines, 1)
            if line.strip()
        ]
    else:
        measured = _read_csv(path, text)
    if not measured:
        raise ValueError(f"{path}: no measurement in it")
    return measured, hashlib.sha256(data).hexdigest()


def _read_csv(path: str | Path, text: str) -> list[ImportedLine]:
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [name.strip() for name in next(reader, [])]
        missing = [name for name in REQUIRED if name not in header]
        if missing:
            raise ValueError(
                f"{path}:1: expected JSONL lines or a CSV header with the columns "
                f"{', '.join(REQUIRED)}; missing {', '.join(missing)}"
            )
        twice = sorted({name for name in header if header.count(name) > 1})
        if twice:
            raise ValueError(f"{path}:1: the header names {', '.join(twice)} more than once")
        out = []
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                raise ValueError(
                    f"{where}: expected {len(header)} columns as in the header, got {len(row)}"
                )
            out.append(
                _line(dict(zip(header, row, strict=True)), where, reader.line_num, from_csv=True)
            )
    except csv.Error as exc:
        raise ValueError(f"{path}:{reader.line_num}: not valid CSV ({exc})") from None
    return out


def import_measurements(store: Store, label: str, target: str, path: str | Path) -> ImportSummary:
    """Check every line, then store them all in one transaction as device `label`'s
    end-to-end data on `target` (a target's name); a file already imported for the same
    device and target is refused."""
    if not isinstance(label, str) or not LABEL.fullmatch(label):
        raise ValueError(
            f"device: expected a label of 1-64 letters, digits, '.', '_' or '-', got {show(label)}"
        )
    of = Target.parse(target)
    measured, digest = read_measurements(path)
    import_id = "i" + uuid.uuid4().hex[:8]
    store.add_import(
        import_id,
        label,
        json.dumps(of.to_dict(), sort_keys=True),
        str(path),
        digest,
        measured,
        time.time(),
    )
    return ImportSummary(import_id, label, of.name, len(measured), len({m.key for m in measured}))
