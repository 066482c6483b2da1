"""The accuracy-latency front of one latency model, from which the best subnet for any
budget is read off.

Each budget given is searched exactly as `evolutionary_search` searches it alone (same
settings, same seed), and everything any of the searches scored goes into one archive, with
the fastest reachable subnets. The front is the archive's non-dominated part, so the subnet
read off for a budget is at least as accurate as the budget's own search found, a larger
budget never reads off a less accurate subnet, and a budget between those searched gets the
best subnet any search met within it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ofa.batch import ConfigBatch
from ofa.config import SubnetConfig
from ofa.local_search import concat, take
from ofa.search import (
    ImpossibleBudget,
    Scorer,
    SearchSettings,
    evolve,
    make_problem,
    refine,
)

__all__ = ["Front", "pareto_front"]

DEFAULT_SETTINGS = SearchSettings()  # frozen, so safe as a default argument


@dataclass(frozen=True)
class Front:
    """Subnets sorted by predicted latency, each more accurate than every faster one."""

    configs: ConfigBatch
    accuracy: np.ndarray
    latency_ms: np.ndarray
    generations: int

    def __len__(self) -> int:
        return len(self.accuracy)

    def index_within(self, budget_ms: float) -> int:
        """The front's point for `budget_ms`: the most accurate within it; ImpossibleBudget,
        naming the fastest reachable latency, when even the fastest is over it."""
        index = int(np.searchsorted(self.latency_ms, budget_ms, side="right")) - 1
        if index < 0:
            raise ImpossibleBudget(
                f"latency_ms: no subnet meets {budget_ms:g} ms; the fastest reachable is "
                f"{self.latency_ms[0]:.2f} ms"
            )
        return index

    def best_within(self, budget_ms: float) -> tuple[SubnetConfig, float, float]:
        """(config, predicted accuracy, predicted latency) for `budget_ms`."""
        i = self.index_within(budget_ms)
        return self.configs.config(i), float(self.accuracy[i]), float(self.latency_ms[i])


def pareto_front(
    accuracy: Scorer,
    latency: Scorer,
    budgets_ms: Sequence[float],
    resolutions: Sequence[int],
    width: float = 1.0,
    settings: SearchSettings = DEFAULT_SETTINGS,
    feasible: Callable[[ConfigBatch], np.ndarray] | None = None,
    searched: Callable[[float], None] | None = None,
    family: str = "mbv3",
) -> Front:
    """The front found by searching each of `budgets_ms`, smallest first (see the module
    docstring); `searched` is told each budget once it is searched. Budgets below the
    fastest reachable latency are skipped (reading them off the front refuses them by
    name); ImpossibleBudget if all are."""
    if not len(budgets_ms):
        raise ValueError("budgets_ms: expected at least one budget")
    found: list[tuple[ConfigBatch, np.ndarray]] = []
    generations, impossible = 0, None
    for budget in sorted(set(budgets_ms)):
        try:
            problem, spare = make_problem(
                accuracy, latency, budget, resolutions, width, feasible, family
            )
        except ImpossibleBudget as exc:
            impossible = exc
            continue
        population, scores, history = evolve(problem, spare, settings)
        reached, reached_scores, _ = refine(problem, population, scores, settings)
        found += [(population, scores), (reached, reached_scores), (spare, accuracy(spare))]
        generations = max(generations, len(history))
        if searched is not None:
            searched(budget)
    if not found and impossible is not None:
        raise impossible
    archive = concat([configs for configs, _ in found])
    scores = np.concatenate([accuracy for _, accuracy in found])
    return _non_dominated(archive, scores, latency(archive), generations)


def _non_dominated(
    configs: ConfigBatch, scores: np.ndarray, latencies: np.ndarray, generations: int
) -> Front:
    """The points no faster-or-equal point beats or equals in accuracy, sorted by latency."""
    order = np.lexsort((-scores, latencies))
    best_before = np.maximum.accumulate(np.concatenate([[-np.inf], scores[order]]))[:-1]
    keep = order[scores[order] > best_before]
    return Front(take(configs, keep), scores[keep], latencies[keep], generations)
