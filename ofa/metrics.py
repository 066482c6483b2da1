"""How close predictions are to measurements: errors in ms and %, the share within +-5% and
+-10%, and rank agreement (what a search cares about). numpy only."""

from __future__ import annotations

import numpy as np

__all__ = ["regression_metrics", "kendall_tau", "spearman_rho"]


def _ranks(values: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return ((ends - counts + 1 + ends) / 2)[inverse]


def spearman_rho(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    return float(np.corrcoef(ra, rb)[0, 1])


def kendall_tau(a: np.ndarray, b: np.ndarray) -> float:
    """Kendall's tau-b (ties in either ranking handled)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    da = np.sign(a[:, None] - a[None, :])
    db = np.sign(b[:, None] - b[None, :])
    upper = np.triu_indices(len(a), 1)
    da, db = da[upper], db[upper]
    denominator = np.sqrt(np.count_nonzero(da) * np.count_nonzero(db))
    return float((da * db).sum() / denominator) if denominator else 0.0


def regression_metrics(predicted: np.ndarray, measured: np.ndarray) -> dict[str, float]:
    """Errors of `predicted` against `measured` (both ms, same order)."""
    predicted, measured = np.asarray(predicted, float), np.asarray(measured, float)
    if predicted.shape != measured.shape or predicted.size < 2:
        raise ValueError(
            f"predicted/measured: need two equal-length series of >= 2 values, "
            f"got {predicted.shape} and {measured.shape}"
        )
    error = predicted - measured
    relative = error / measured
    return {
        "n": int(measured.size),
        "rmse_ms": float(np.sqrt(np.mean(error**2))),
        "rmse_pct": float(100 * np.sqrt(np.mean(relative**2))),
        "mape_pct": float(100 * np.mean(np.abs(relative))),
        "within_5pct": float(np.mean(np.abs(relative) <= 0.05)),
        "within_10pct": float(np.mean(np.abs(relative) <= 0.10)),
        "kendall_tau": kendall_tau(predicted, measured),
        "spearman_rho": spearman_rho(predicted, measured),
    }
