"""Running `ofa-coord` in-process: its whole output, or stdout alone as a program reading
JSON or CSV gets it."""

from __future__ import annotations

from click.testing import CliRunner

from coordinator.cli.app import main as coord


def stdout(main, *args) -> str:
    """The command's stdout alone (what a program reading JSON or CSV gets)."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def cli(*args, expect: int = 0) -> str:
    """`ofa-coord ARGS`: its output (stdout and stderr) once it exited with `expect`."""
    result = CliRunner().invoke(coord, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result.output


def campaign_id(output: str) -> str:
    """The id in `campaign create`'s "campaign ID ..." line."""
    return output.split("campaign ", 1)[1].split()[0]
