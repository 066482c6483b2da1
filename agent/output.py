"""How both command lines print what a command lists or shows: `--format table|json`
everywhere, csv where the data is a table of records. Tables by tabulate fitted to 80
columns, strict JSON, CSV with JSON cells. It lives with the agent, the layer both
command lines stand on (the agent imports nothing of the coordinator's)."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import click
import tabulate

from agent import strict_json

# tabulate pads every header by 2 more characters than its column needs; the tables here
# separate columns by 2 spaces already, and must fit 80 columns
tabulate.MIN_PADDING = 0

TABLE, JSON, CSV = "table", "json", "csv"
TERMINAL_COLUMNS = 80


def format_option(*, csv: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The `--format` option of a command that lists or shows something."""
    choices = [TABLE, JSON, CSV] if csv else [TABLE, JSON]
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(choices),
        default=TABLE,
        show_default=True,
        help="table: aligned columns for people; json: for programs"
        + ("; csv: one row per record" if csv else "")
        + ".",
    )


@dataclass(frozen=True)
class Column:
    """A table column: its header, the record key it shows, and how a value is written."""

    header: str
    key: str
    show: Callable[[Any], str] = str
    align: str = "left"  # or "right", for numbers


def render_table(
    records: Sequence[Mapping[str, Any]], columns: Sequence[Column], width: int = TERMINAL_COLUMNS
) -> str:
    """Records as a table with headers that fits `width` terminal columns where it can: the
    widest column wraps (tabulate does the layout) until the table fits."""
    cells = [["-" if r.get(c.key) is None else c.show(r[c.key]) for c in columns] for r in records]
    widths = [max([len(c.header)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    while True:
        text = tabulate.tabulate(
            cells,
            headers=[c.header for c in columns],
            tablefmt="simple",
            colalign=[c.align for c in columns],
            maxcolwidths=widths,
            disable_numparse=True,
        )
        overflow = max(len(line) for line in text.splitlines()) - width
        widest = widths.index(max(widths))
        if overflow <= 0 or widths[widest] <= 8:
            return text
        widths[widest] = max(8, widths[widest] - overflow)


def _csv_cell(value: Any) -> Any:
    """A raw value for CSV: numbers as they are, lists and objects as JSON, null as empty."""
    if isinstance(value, (list, tuple, dict)):
        return strict_json.dumps(value, sort_keys=True)
    value = strict_json.finite(value)
    return "" if value is None else value


def render_fields(fields: Mapping[str, Any]) -> str:
    """One record shown as a two-column table: each field's name beside its value."""
    rows = [{"field": name, "value": value} for name, value in fields.items()]
    return render_table(rows, [Column("field", "field"), Column("value", "value", _show)])


def _show(value: Any) -> str:
    """A value for people: floats to 6 significant digits."""
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def echo_json(value: Any) -> None:
    """Strict JSON on stdout (a non-finite number becomes null)."""
    click.echo(strict_json.dumps(value, indent=2))


def emit(
    records: Sequence[Mapping[str, Any]],
    fmt: str,
    columns: Sequence[Column],
    empty: str = "nothing to show",
) -> None:
    """Print records as `fmt`: a table (or `empty` when there are none), strict JSON (all
    fields of each record), or CSV (the table's columns, raw values)."""
    if fmt == JSON:
        echo_json(list(records))
    elif fmt == CSV:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow([c.key for c in columns])
        writer.writerows([_csv_cell(r.get(c.key)) for c in columns] for r in records)
    elif records:
        click.echo(render_table(records, columns))
    else:
        click.echo(empty)
