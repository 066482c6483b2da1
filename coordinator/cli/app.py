"""`ofa-coord`: the coordinator's command line. This module only assembles the command groups;
errors reach the user in one format (see cli/errors.py)."""

from __future__ import annotations

import click

from coordinator.cli.accuracy import accuracy
from coordinator.cli.agent import agent
from coordinator.cli.assets import assets
from coordinator.cli.campaign import campaign
from coordinator.cli.demo import demo
from coordinator.cli.devices import devices
from coordinator.cli.errors import ErrorMapping
from coordinator.cli.lut import lut
from coordinator.cli.measurements import measurements
from coordinator.cli.predictor import predictor
from coordinator.cli.profile import profile
from coordinator.cli.results import results
from coordinator.cli.serve import serve
from coordinator.cli.specialize import specialize
from coordinator.cli.status import status
from coordinator.cli.subnet import describe, export, sample
from coordinator.cli.token import token
from coordinator.cli.train import train


@click.group(cls=ErrorMapping, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Profile OFA subnets on a fleet of devices, build their latency models, and pick the
    best subnet per device and budget."""


for command in (
    serve,
    token,
    devices,
    status,
    agent,
    campaign,
    results,
    lut,
    measurements,
    predictor,
    profile,
    specialize,
    accuracy,
    assets,
    sample,
    describe,
    export,
    demo,
    train,
):
    main.add_command(command)
