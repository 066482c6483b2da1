"""Running a command as a program reading its output would: stdout alone."""

from __future__ import annotations

from click.testing import CliRunner


def stdout(main, *args) -> str:
    """The command's stdout alone (what a program reading JSON or CSV gets)."""
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout
