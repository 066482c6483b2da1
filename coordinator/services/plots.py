"""Pictures of predictor quality (matplotlib, drawn off-screen)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["predicted_vs_measured", "accuracy_latency_front"]


def predicted_vs_measured(
    series: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str
) -> Path:
    """Scatter of predicted against measured latency, one colour per predictor, with the
    y = x line and the ±10% band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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


def accuracy_latency_front(rows: list[dict], path: Path, source: str) -> Path:
    """Predicted top-1 against predicted latency of the subnets found per budget; the title
    (also the PNG's Title text) names `source`, the latency model they were found with."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    axes.plot([r["latency_ms"] for r in rows], [100 * r["accuracy"] for r in rows], "o-")
    axes.set(
        xlabel="predicted latency (ms)",
        ylabel="predicted top-1 (%)",
        title=f"specialised subnets per latency budget\n{source}",
    )
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, metadata={"Title": f"accuracy-latency front: {source}"})
    plt.close(figure)
    return path
