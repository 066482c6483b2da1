"""Click parameter types shared by the coordinator's commands."""

from __future__ import annotations

import click

from ofa import space


class ResolutionList(click.ParamType):
    """A comma-separated list of input resolutions, e.g. `160,192,224`."""

    name = "R[,R...]"

    def convert(self, value, param, ctx):
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
                self.fail(f"resolution {size} is outside {space.MIN_RESOLUTION}.."
                          f"{space.MAX_RESOLUTION}", param, ctx)
        return sizes


RESOLUTIONS = ResolutionList()
WIDTH = click.Choice([str(w) for w in space.WIDTH_CHOICES])
