"""What this device is. Every probe may fail (Android denies parts of /proc): a failed
probe leaves its field out rather than failing the agent."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str | None:
    """The CPU's marketing name from /proc/cpuinfo (x86 'model name', ARM 'Hardware'/'Model')."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or None
    for field in ("model name", "Hardware", "Model", "cpu model"):
        for line in text.splitlines():
            name, _, value = line.partition(":")
            if name.strip() == field and value.strip():
                return value.strip()
    return platform.processor() or None


def machine_summary() -> dict[str, object]:
    """The facts every benchmark figure is printed with."""
    return {"machine": platform.machine(), "system": platform.system(),
            "cpu_model": cpu_model(), "logical_cpus": os.cpu_count(),
            "python": platform.python_version()}
