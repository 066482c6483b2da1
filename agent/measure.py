"""Measuring one ONNX model's latency the way design.md §4 asks.

Cold start (session creation, first inference) is timed apart from steady state; warm-up
runs by count and by time; timed runs go in blocks and stop when the confidence interval of
the median is narrow enough or the time cap is hit, and the result says which. Every raw
sample is kept; nothing is trimmed.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

__all__ = ["BenchSettings", "Measurement", "summarize", "median_ci", "measure"]


@dataclass(frozen=True)
class BenchSettings:
    """How long and how carefully to measure. Defaults follow design.md §4."""

    threads: int = 1
    warmup_runs: int = 10
    warmup_min_s: float = 0.5
    min_runs: int = 50
    min_time_s: float = 1.0
    max_time_s: float = 30.0
    block_runs: int = 10
    target_precision: float = 0.02  # half-width of the median's 95% CI over the median
    execution_provider: str = "CPUExecutionProvider"

    def __post_init__(self) -> None:
        for name in ("threads", "min_runs", "block_runs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")
        for name in ("warmup_runs", "warmup_min_s", "min_time_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name}: expected >= 0, got {getattr(self, name)}")
        if not self.max_time_s > 0:
            raise ValueError(f"max_time_s: expected > 0, got {self.max_time_s}")
        if not 0 < self.target_precision < 1:
            raise ValueError(f"target_precision: expected a fraction in (0, 1), "
                             f"got {self.target_precision}")


@dataclass
class Measurement:
    """Raw timings of one model. `stop_reason` is 'precision' or 'time_cap'."""

    samples_ns: list[int]
    session_create_ns: int
    first_run_ns: int
    warmup_runs: int
    stop_reason: str
    onnxruntime_version: str = ort.__version__
    settings: dict = field(default_factory=dict)

    def stats(self) -> dict[str, float]:
        return summarize(self.samples_ns)


def median_ci(samples: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free ~95% confidence interval of the median from order statistics."""
    ordered = np.sort(samples)
    n = len(ordered)
    half = z * math.sqrt(n) / 2
    low = max(0, int(math.floor(n / 2 - half)) - 1)
    high = min(n - 1, int(math.ceil(n / 2 + half)))
    return float(ordered[low]), float(ordered[high])


def summarize(samples_ns: list[int] | np.ndarray) -> dict[str, float]:
    """Median, mean, std, p10/p90/p99, CV and the median's CI, in milliseconds."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("samples: no samples to summarise")
    low, high = median_ci(ms)
    median = float(np.median(ms))
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    return {"n": int(ms.size), "median_ms": median, "mean_ms": mean, "std_ms": std,
            "p10_ms": float(np.percentile(ms, 10)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "cv": std / mean if mean else 0.0,
            "ci_low_ms": low, "ci_high_ms": high,
            "ci_rel_half_width": (high - low) / (2 * median) if median else 0.0}


def _random_inputs(session: ort.InferenceSession) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    feeds = {}
    for meta in session.get_inputs():
        if any(not isinstance(d, int) for d in meta.shape):
            raise ValueError(f"model input {meta.name!r} has a dynamic shape {meta.shape}; "
                             "export with static shapes")
        feeds[meta.name] = rng.standard_normal(meta.shape).astype(np.float32)
    return feeds


def measure(model: str | Path | bytes, settings: BenchSettings = BenchSettings()) -> Measurement:
    """Create an onnxruntime session for `model` and time it under `settings`."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = settings.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    source = model if isinstance(model, bytes) else str(model)
    clock = time.perf_counter_ns
    start = clock()
    session = ort.InferenceSession(source, options, providers=[settings.execution_provider])
    session_create_ns = clock() - start
    feeds = _random_inputs(session)
    run = session.run

    start = clock()
    run(None, feeds)
    first_run_ns = clock() - start

    warmup_end = clock() + int(settings.warmup_min_s * 1e9)
    warmups = 0
    while warmups < settings.warmup_runs or clock() < warmup_end:
        run(None, feeds)
        warmups += 1

    samples: list[int] = []
    begin = clock()
    min_end = begin + int(settings.min_time_s * 1e9)
    cap = begin + int(settings.max_time_s * 1e9)
    while True:
        for _ in range(settings.block_runs):
            t0 = clock()
            run(None, feeds)
            samples.append(clock() - t0)
        now = clock()
        if len(samples) >= settings.min_runs and now >= min_end:
            low, high = median_ci(np.asarray(samples, dtype=np.float64))
            if (high - low) / (2 * float(np.median(samples))) <= settings.target_precision:
                reason = "precision"
                break
        if now >= cap:
            reason = "time_cap"
            break
    return Measurement(samples, session_create_ns, first_run_ns, warmups, reason,
                       settings=asdict(settings))
