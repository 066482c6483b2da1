"""What this device is and what state it is in. Every probe may fail (Android denies parts
of /proc, containers hide sensors): a failed probe leaves its field out, never fails the agent."""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from agent.gpu import gpu_device_info, gpu_telemetry

__all__ = [
    "cpu_model",
    "machine_summary",
    "device_info",
    "telemetry",
    "reset_peak_rss",
    "peak_rss_bytes",
    "probe",
    "max_temperature_c",
    "MAX_LIST",
]

# The most entries a list of the device's description holds (sensors, providers): the
# coordinator refuses longer ones.
MAX_LIST = 64


def probe(fn: Callable[[], Any]) -> Any:
    """`fn()`, or None where the device denies it, lacks it or gives nothing."""
    try:
        value = fn()
    except Exception:  # any probe may be denied or absent on some device
        return None
    return value if value not in ("", [], {}) else None


def cpu_model() -> str | None:
    """The CPU's name from /proc/cpuinfo (x86 'model name', ARM 'Hardware'/'Model')."""
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


def machine_summary() -> dict[str, Any]:
    """The facts every benchmark figure is printed with."""
    return {
        "machine": platform.machine(),
        "system": platform.system(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "python": platform.python_version(),
    }


def _governor() -> str:
    return Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor").read_text().strip()


def _temperature_sources() -> list[str]:
    """The first MAX_LIST sensors: a two-socket server has more than the coordinator takes."""
    return sorted(
        f"{chip}/{entry.label or i}"
        for chip, entries in psutil.sensors_temperatures().items()
        for i, entry in enumerate(entries)
    )[:MAX_LIST]


def _android_release() -> str | None:
    if "ANDROID_ROOT" not in os.environ:
        return None
    import subprocess

    return subprocess.run(
        ["getprop", "ro.build.version.release"], capture_output=True, text=True, timeout=2
    ).stdout.strip()


def _onnxruntime() -> tuple[str | None, list[str] | None]:
    try:
        import onnxruntime as ort
    except Exception:
        return None, None
    return ort.__version__, probe(ort.get_available_providers)


def _torch(with_torch: bool) -> tuple[str | None, str | None]:
    """torch and CUDA, only if the agent runs torch jobs and torch is installed. Importing
    torch takes seconds, which an agent that never runs it should not pay at every start."""
    if not with_torch:
        return None, None
    try:
        if importlib.util.find_spec("torch") is None:
            return None, None
        torch = importlib.import_module("torch")
    except Exception:
        return None, None
    cuda = probe(lambda: torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
    return torch.__version__, cuda


def device_info(with_torch: bool = True) -> dict[str, Any]:
    """Fields of the protocol's DeviceInfo; absent keys mean the probe failed (or, for
    torch's, that the agent does not run torch jobs: `with_torch` False)."""
    ort_version, providers = _onnxruntime()
    torch_version, cuda = _torch(with_torch)
    freq = probe(psutil.cpu_freq)
    info = {
        "os": probe(platform.system),
        "os_release": probe(platform.release),
        "machine": probe(platform.machine),
        "cpu_model": probe(cpu_model),
        "physical_cores": probe(lambda: psutil.cpu_count(logical=False)),
        "logical_cores": probe(lambda: psutil.cpu_count(logical=True)),
        "cpu_min_mhz": freq.min if freq and freq.min else None,
        "cpu_max_mhz": freq.max if freq and freq.max else None,
        "cpu_governor": probe(_governor),
        "memory_bytes": probe(lambda: psutil.virtual_memory().total),
        "temperature_sources": probe(_temperature_sources),
        "onnxruntime_version": ort_version,
        "onnxruntime_providers": providers,
        "torch_version": torch_version,
        "cuda_device": cuda,
        "python_version": probe(platform.python_version),
        "hostname": probe(socket.gethostname),
        "android_release": probe(_android_release),
        **gpu_device_info(),
    }
    return {k: v for k, v in info.items() if v is not None}


def max_temperature_c() -> float | None:
    """The highest temperature any sensor reports, where the OS exposes them."""
    readings = [
        e.current
        for entries in psutil.sensors_temperatures().values()
        for e in entries
        if e.current is not None
    ]
    return max(readings) if readings else None


def _steal_percent() -> float | None:
    times = psutil.cpu_times_percent(interval=None)
    return getattr(times, "steal", None)


def telemetry(gpu: int | None = None) -> dict[str, Any]:
    """Fields of the protocol's Telemetry: frequency, temperature, load, CPU steal, memory,
    and the clocks, temperature and memory of CUDA device `gpu` where one is named. CPU
    percentages are since the previous call (the first call reads since boot)."""
    snapshot = {
        "unix_time_ns": time.time_ns(),
        "cpu_freq_mhz": probe(lambda: psutil.cpu_freq().current),
        "temperature_c": probe(max_temperature_c),
        "load_1m": probe(lambda: os.getloadavg()[0]),
        "cpu_percent": probe(lambda: psutil.cpu_percent(interval=None)),
        "cpu_steal_percent": probe(_steal_percent),
        "available_memory_bytes": probe(lambda: psutil.virtual_memory().available),
        **(gpu_telemetry(gpu) if gpu is not None else {}),
    }
    return {k: v for k, v in snapshot.items() if v is not None}


def reset_peak_rss() -> bool:
    """Start a new peak-RSS window (Linux: writing 5 to clear_refs resets VmHWM); whether it
    could. Without a reset the peak is the process's lifetime peak, which only grows."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int | None:
    """Peak resident memory since the last reset (VmHWM), or None where the OS has no
    VmHWM."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None
