"""Pictures of predictor quality and of LUTs compared (matplotlib, drawn off-screen)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["predicted_vs_measured", "ratio_by_group", "lut_by_group"]


def _pyplot():
    """pyplot drawing off-screen (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def predicted_vs_measured(
    series: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str
) -> Path:
    """Scatter of predicted against measured latency, one colour per predictor, with the
    y = x line and the ±10% band."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(6, 6), dpi=120)
    low = min(min(p.min(), m.min()) for p, m in series.values()) * 0.9
    high = max(max(p.max(), m.max()) for p, m in series.values()) * 1.1
    line = np.linspace(low, high, 2)
    axes.fill_between(line, line * 0.9, line * 1.1, color="0.9", label="±10%")
    axes.plot(line, line, color="0.4", linewidth=1)
    for name, (predicted, measured) in series.items():
        axes.scatter(measured, predicted, s=12, alpha=0.7, label=name)
    axes.set(
        xlim=(low, high),
        ylim=(low, high),
        xlabel="measured latency (ms)",
        ylabel="predicted latency (ms)",
        title=title,
    )
    axes.legend(loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def ratio_by_group(comparisons: list[dict], dimensions: Sequence[str], path: Path) -> Path:
    """Per dimension (stage, kernel, ...) one panel: each compared table's median latency
    ratio to the base per group, with its p10-p90 range, around the line of equal latency."""
    ylabel = f"latency / {comparisons[0]['base']}"
    return _by_group(comparisons, dimensions, path, ylabel, reference=1.0)


def lut_by_group(label: str, groups: list[dict], dimensions: Sequence[str], path: Path) -> Path:
    """One device's LUT entries per group of each dimension (`latency_groups`): median ms
    and p10-p90, on a log scale (on Note10 the tail's layers span 0.01-0.7 ms)."""
    return _by_group(
        [{"table": label, "groups": groups}], dimensions, path, "LUT entry (ms)", log=True
    )


def _by_group(
    series: list[dict],
    dimensions: Sequence[str],
    path: Path,
    ylabel: str,
    reference: float | None = None,
    log: bool = False,
) -> Path:
    """One panel per dimension; in it, each series' group medians with p10-p90 bars."""
    plt = _pyplot()
    figure, panels = plt.subplots(1, len(dimensions), figsize=(4 * len(dimensions), 4), dpi=120)
    offsets = np.linspace(-0.2, 0.2, len(series)) if len(series) > 1 else [0.0]
    for axes, dimension in zip(panels, dimensions, strict=True):
        labels: list[str] = []  # one order of groups per panel, shared by all series
        for one in series:
            for row in one["groups"]:
                if row["by"] == dimension and row["group"] not in labels:
                    labels.append(row["group"])
        for offset, one in zip(offsets, series, strict=True):
            rows = [row for row in one["groups"] if row["by"] == dimension]
            median = np.array([row["median"] for row in rows])
            spread = np.array([[row["p10"] for row in rows], [row["p90"] for row in rows]])
            axes.errorbar(
                [labels.index(row["group"]) + offset for row in rows],
                median,
                yerr=np.abs(spread - median),
                fmt="o",
                capsize=3,
                label=one["table"],
            )
        if reference is not None:
            axes.axhline(reference, color="0.4", linewidth=1)
        if log:
            axes.set_yscale("log")
        axes.set_xticks(range(len(labels)), labels, rotation=45 if dimension == "stage" else 0)
        axes.set(xlabel=dimension, ylabel=ylabel)
        axes.grid(alpha=0.3)
    panels[0].legend(loc="best")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    plt.close(figure)
    return path
