"""Statistics of raw latency samples. Pure numpy, shared by the agent (its stopping rule,
`ofa-agent bench`) and the coordinator (figures stored beside the raw samples)."""

from __future__ import annotations

import math

import numpy as np

__all__ = ["median_ci", "summarize"]


def median_ci(samples: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free ~95% confidence interval of the median from order statistics."""
    ordered = np.sort(np.asarray(samples, dtype=np.float64))
    n = len(ordered)
    half = z * math.sqrt(n) / 2
    low = max(0, int(math.floor(n / 2 - half)) - 1)
    high = min(n - 1, int(math.ceil(n / 2 + half)))
    return float(ordered[low]), float(ordered[high])


def summarize(samples_ns) -> dict[str, float]:
    """Median, mean, std, p10/p90/p99, CV and the median's CI, in milliseconds."""
    ms = np.asarray(samples_ns, dtype=np.float64) / 1e6
    if ms.size == 0:
        raise ValueError("samples: no samples to summarise")
    low, high = median_ci(ms)
    median = float(np.median(ms))
    mean = float(ms.mean())
    std = float(ms.std(ddof=1)) if ms.size > 1 else 0.0
    return {
        "n": int(ms.size),
        "median_ms": median,
        "mean_ms": mean,
        "std_ms": std,
        "p10_ms": float(np.percentile(ms, 10)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "cv": std / mean if mean else 0.0,
        "ci_low_ms": low,
        "ci_high_ms": high,
        "ci_rel_half_width": (high - low) / (2 * median) if median else 0.0,
    }
