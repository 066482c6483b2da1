"""Starting a coordinator and agents as local processes (the demo, tests and benchmarks):
the same commands a user runs, on loopback."""

from __future__ import annotations

import select
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO

__all__ = ["start_server", "start_agent"]


def start_server(
    db: Path,
    listen: str = "127.0.0.1:0",
    args: Sequence[str] = (),
    log: IO[bytes] | None = None,
    timeout_s: float = 30,
) -> tuple[subprocess.Popen, str]:
    """`ofa-coord serve` in its own process; returns it and the address it bound."""
    process = subprocess.Popen(
        [sys.executable, "-m", "coordinator", "serve", "--db", str(db), "--listen", listen, *args],
        stdout=subprocess.PIPE,
        stderr=log or subprocess.DEVNULL,
    )
    stdout = process.stdout
    assert stdout is not None  # stdout=PIPE
    ready, _, _ = select.select([stdout], [], [], timeout_s)
    line = stdout.readline().decode() if ready else ""
    if not line.startswith("listening on "):
        process.kill()
        raise RuntimeError(f"the coordinator did not start (it printed {line!r})")
    return process, line.split()[-1]


def start_agent(
    address: str,
    token_file: Path,
    cache_dir: Path,
    labels: Sequence[str] = (),
    args: Sequence[str] = (),
    log: IO[bytes] | None = None,
    executable: Sequence[str] | None = None,
) -> subprocess.Popen:
    """`ofa-agent run` in its own process."""
    command = [
        *(executable or [sys.executable, "-m", "agent"]),
        "run",
        "--coordinator",
        address,
        "--token-file",
        str(token_file),
        "--cache-dir",
        str(cache_dir),
        *args,
    ]
    for label in labels:
        command += ["--label", label]
    return subprocess.Popen(
        command,
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )
