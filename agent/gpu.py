"""What an NVIDIA GPU is and what state it is in, read through NVML (the `gpu` extra installs
its binding, nvidia-ml-py; the driver provides the library). A GPU's clocks and temperature
move its latency as a CPU's do, so each GPU measurement records them before and after.
Without the binding, the driver or a GPU every field is left out, as device.py's probes do.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any

__all__ = ["gpu_device_info", "gpu_telemetry"]


@functools.cache
def _nvml() -> Any:
    """The initialised pynvml module, or None (no binding, no driver, no GPU)."""
    try:
        nvml = importlib.import_module("pynvml")
        nvml.nvmlInit()
    except Exception:  # ImportError, or NVMLError_LibraryNotFound / DriverNotLoaded
        return None
    return nvml


def _handle(nvml: Any, cuda_index: int) -> Any:
    """NVML's handle of what CUDA calls device `cuda_index`. CUDA_VISIBLE_DEVICES renumbers
    the GPUs CUDA sees (by index or by a UUID or its prefix; set but empty, none) and NVML
    ignores it. Indices count in CUDA_DEVICE_ORDER, fastest first unless PCI_BUS_ID, and
    NVML counts by PCI bus: on a host of different GPUs an index is ambiguous without
    PCI_BUS_ID, so it names none (ValueError), rather than possibly the wrong one."""
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    entries = None if visible is None else [e.strip() for e in visible.split(",") if e.strip()]
    by_index = entries is None or any(e.isdigit() for e in entries)
    models = {_text(nvml.nvmlDeviceGetName(h)) for h in handles}
    if by_index and len(models) > 1 and os.environ.get("CUDA_DEVICE_ORDER") != "PCI_BUS_ID":
        raise ValueError("GPUs of different models, numbered fastest first: set PCI_BUS_ID")
    candidates = handles if entries is None else [_visible(nvml, handles, e) for e in entries]
    if cuda_index >= len(candidates):
        raise ValueError(f"cuda:{cuda_index} is not among the {len(candidates)} GPUs CUDA sees")
    return candidates[cuda_index]


def _visible(nvml: Any, handles: list[Any], entry: str) -> Any:
    """The GPU a CUDA_VISIBLE_DEVICES entry names: an index, or a UUID or its unique prefix
    (MIG instances are not followed)."""
    if entry.isdigit():
        return handles[int(entry)]
    matches = [h for h in handles if _text(nvml.nvmlDeviceGetUUID(h)).startswith(entry)]
    if len(matches) != 1:
        raise ValueError(f"CUDA_VISIBLE_DEVICES entry {entry!r} names {len(matches)} GPUs")
    return matches[0]


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value  # bytes from older bindings


def _read(fields: dict[str, Any]) -> dict[str, Any]:
    """Each field's reader called; one the GPU refuses (NVMLError_NotSupported) is left out."""
    values = {}
    for name, read in fields.items():
        try:
            values[name] = read()
        except Exception:
            continue
    return values


def _gpu(cuda_index: int) -> tuple[Any, Any] | None:
    """NVML and its handle of CUDA device `cuda_index`, or None where either is missing."""
    nvml = _nvml()
    if nvml is None:
        return None
    try:
        return nvml, _handle(nvml, cuda_index)
    except Exception:
        return None


def gpu_device_info(cuda_index: int = 0) -> dict[str, Any]:
    """DeviceInfo's GPU fields: the GPU's name, driver version and memory."""
    found = _gpu(cuda_index)
    if found is None:
        return {}
    nvml, handle = found
    return _read(
        {
            "gpu_name": lambda: _text(nvml.nvmlDeviceGetName(handle)),
            "gpu_driver": lambda: _text(nvml.nvmlSystemGetDriverVersion()),
            "gpu_memory_bytes": lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).total),
        }
    )


def gpu_telemetry(cuda_index: int) -> dict[str, Any]:
    """Telemetry's GPU fields for the GPU a job runs on: SM and memory clocks, temperature,
    memory in use, and the GPU's index as CUDA numbers it."""
    found = _gpu(cuda_index)
    if found is None:
        return {}
    nvml, handle = found
    values = _read(
        {
            "gpu_sm_clock_mhz": lambda: float(
                nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM)
            ),
            "gpu_memory_clock_mhz": lambda: float(
                nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM)
            ),
            "gpu_temperature_c": lambda: float(
                nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU)
            ),
            "gpu_memory_used_bytes": lambda: int(nvml.nvmlDeviceGetMemoryInfo(handle).used),
        }
    )
    return {"gpu_index": cuda_index, **values} if values else {}
