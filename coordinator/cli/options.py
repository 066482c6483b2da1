"""Options and parameter types shared by the coordinator's commands."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from coordinator.cli.errors import DB_META
from coordinator.services.targets import MAX_BATCH, PRECISIONS
from coordinator.state import is_postgres_url, redacted
from ofa import space
from ofa.zoo import FAMILY_NAMES, WIDTHS


class ResolutionList(click.ParamType):
    """A comma-separated list of input resolutions, e.g. `160,192,224`."""

    name = "R[,R...]"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, ...]:
        if isinstance(value, tuple):
            return value
        try:
            sizes = tuple(int(v) for v in str(value).split(",") if v.strip())
        except ValueError:
            self.fail(f"expected comma-separated integers, got {value!r}", param, ctx)
        if not sizes:
            self.fail("expected at least one resolution", param, ctx)
        for size in sizes:
            if not space.MIN_RESOLUTION <= size <= space.MAX_RESOLUTION:
                self.fail(
                    f"resolution {size} is outside {space.MIN_RESOLUTION}..{space.MAX_RESOLUTION}",
                    param,
                    ctx,
                )
        return sizes


class FiniteFloat(click.FloatRange):
    """A float range that also refuses nan and inf (click's ranges let both through)."""

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"expected a finite number, got {value!r}", param, ctx)
        return number


RESOLUTIONS = ResolutionList()


class DatabaseLocation(click.Path):
    """An SQLite file's path, or a postgresql:// URL taken as it is (only connecting can
    tell whether that database is there)."""

    name = "FILE|URL"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if is_postgres_url(value):
            authority = str(value).split("://", 1)[1].split("/", 1)[0]
            if authority.count("@") > 1:  # libpq would read part of the password as the host
                self.fail(
                    "write an '@' inside a PostgreSQL URL's user or password as %40", param, ctx
                )
            return str(value)
        return super().convert(value, param, ctx)


def _remember_db(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Errors of the database are reported against its path or URL, never its password
    (see cli/errors.py)."""
    if value is not None:
        ctx.meta[DB_META] = redacted(value)
    return value


def db_option(
    *, must_exist: bool, required: bool = True, help: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The `--db` option: the coordinator's SQLite file or PostgreSQL URL."""
    return click.option(
        "--db",
        type=DatabaseLocation(exists=must_exist, dir_okay=False),
        required=required,
        callback=_remember_db,
        help=help,
    )


DB = db_option(
    must_exist=True,
    help="The coordinator's SQLite file (its files live beside it), or a postgresql:// URL.",
)
NEW_DB = db_option(
    must_exist=False,
    help="The coordinator's SQLite file (created if missing), or a postgresql:// URL.",
)


def supernet_options(command: Callable) -> Callable:
    """`--family` and `--width`, the supernet whose subnets a command handles: the command
    gets `family` and `width` (a float, the family's first width when not given)."""

    def choose_width(ctx: click.Context, param: click.Parameter, value: str | None) -> float:
        return float(value) if value else WIDTHS[ctx.params.get("family", FAMILY_NAMES[0])][0]

    command = click.option(
        "--width",
        type=click.Choice(sorted({str(w) for choices in WIDTHS.values() for w in choices})),
        callback=choose_width,
        help="The supernet's width multiplier  [default: the family's first, 1.0 or 1.3]",
    )(command)
    return click.option(
        "--family",
        type=click.Choice(FAMILY_NAMES),
        default=FAMILY_NAMES[0],
        show_default=True,
        is_eager=True,  # read before --width's default is chosen
        help="The supernet: OFA MobileNetV3 (w1.0, w1.2), ProxylessNAS (w1.3) or ResNet50 "
        "(its width multipliers are per subnet).",
    )(command)


def precision_option(command: Callable) -> Callable:
    """`--precision`, as `campaign create` and `export` take it."""
    return click.option(
        "--precision",
        type=click.Choice(PRECISIONS),
        default="fp32",
        show_default=True,
        help="Of the models: fp16 halves every weight and operation; int8 quantises statically "
        "(QDQ, onnxruntime's tools, calibrated on fixed inputs).",
    )(command)


def batch_option(command: Callable) -> Callable:
    """`--batch`, as `campaign create` and `export` take it."""
    return click.option(
        "--batch",
        type=click.IntRange(1, MAX_BATCH),
        default=1,
        show_default=True,
        help="Batch size of the models' input.",
    )(command)


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity, where the OS has one, and at most its
    cgroup's CPU quota (a container limited to 2 CPUs of a 64-core host sees 64)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no affinity call
        cpus = os.cpu_count() or 1
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # cgroup v1, or none: the affinity alone
        pass
    return cpus
