"""`ofa-coord`: the coordinator's command line. This module only assembles the commands;
errors reach the user in one format (see cli_errors)."""

from __future__ import annotations

import click

from coordinator.accuracy_commands import accuracy
from coordinator.assets import assets
from coordinator.campaign_commands import campaign, lut, results
from coordinator.cli_errors import ErrorMapping
from coordinator.demo import demo
from coordinator.fleet_commands import devices, serve, token
from coordinator.predictor_commands import predictor
from coordinator.specialize_commands import specialize
from coordinator.subnet_commands import describe, export, sample
from coordinator.train_commands import train


@click.group(cls=ErrorMapping, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Profile OFA subnets on a fleet of devices, build their latency models, and pick the
    best subnet per device and budget."""


for command in (serve, token, devices, campaign, results, lut, predictor, specialize, accuracy,
                assets, sample, describe, export, demo, train):
    main.add_command(command)
