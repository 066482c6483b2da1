"""Evolutionary search for the most accurate subnet under a latency budget, vectorised over
the population (numpy arrays, one predictor call per generation).

It follows OFA's evolution finder (parents = the best quarter, then mutants and crossovers)
but never loops forever: a budget below the fastest reachable latency is refused at once,
naming that latency, and candidates that miss the constraint are drawn in bulk with a cap
on attempts rather than one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from numbers import Real

import numpy as np

from ofa import space
from ofa.batch import ConfigBatch, check_array
from ofa.config import SubnetConfig, check_int, check_width, show

__all__ = [
    "SearchSettings",
    "SearchResult",
    "ImpossibleBudget",
    "evolutionary_search",
    "fastest_configs",
]

Scorer = Callable[[ConfigBatch], np.ndarray]


class ImpossibleBudget(ValueError):
    """No subnet of the space meets the constraint."""


@dataclass(frozen=True)
class SearchSettings:
    population: int = 100
    generations: int = 500
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    resolution_mutate_prob: float = 0.5
    patience: int = 0  # stop after this many generations without improvement (0: never)
    seed: int = 0

    def __post_init__(self) -> None:
        for name, bounds in (
            ("population", (2, 10**6)),
            ("generations", (0, 10**9)),
            ("patience", (0, 10**9)),
            ("seed", (0, 2**63 - 1)),
        ):
            check_int(name, getattr(self, name), bounds=bounds)
        for name in ("parent_ratio", "mutation_ratio", "mutate_prob", "resolution_mutate_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= float(value) <= 1:
                raise ValueError(f"{name}: expected a number in 0..1, got {show(value)}")
        parents, mutants = self.split()
        if parents + mutants > self.population:
            raise ValueError(
                f"population: {self.population} cannot hold {parents} parents and "
                f"{mutants} mutants (parent_ratio, mutation_ratio)"
            )

    def split(self) -> tuple[int, int]:
        """(parents, mutants) per generation; crossovers fill the rest of the population."""
        return (
            max(2, int(self.population * self.parent_ratio)),
            int(self.population * self.mutation_ratio),
        )


@dataclass
class SearchResult:
    config: SubnetConfig
    accuracy: float
    latency_ms: float
    generations: int
    history: list[float] = field(default_factory=list)  # best accuracy per generation


def _concat(batches: Sequence[ConfigBatch]) -> ConfigBatch:
    return ConfigBatch(
        np.concatenate([b.ks for b in batches]),
        np.concatenate([b.e for b in batches]),
        np.concatenate([b.d for b in batches]),
        np.concatenate([b.r for b in batches]),
        batches[0].w,
    )


def _take(batch: ConfigBatch, index: np.ndarray) -> ConfigBatch:
    return ConfigBatch(batch.ks[index], batch.e[index], batch.d[index], batch.r[index], batch.w)


def _random(n: int, resolutions: np.ndarray, width: float, rng: np.random.Generator) -> ConfigBatch:
    return ConfigBatch(
        rng.integers(0, 3, (n, space.N_BLOCKS), dtype=np.int8),
        rng.integers(0, 3, (n, space.N_BLOCKS), dtype=np.int8),
        rng.choice(np.array(space.DEPTH_CHOICES, np.int8), (n, space.N_STAGES)),
        rng.choice(resolutions, n),
        width,
    )


def fastest_configs(resolutions: Sequence[int], width: float) -> ConfigBatch:
    """The smallest subnet (kernel 3, expand 3, depth 2) at each resolution: the fastest on
    any device whose latency grows with size, and the lower bound the budget check uses."""
    checked = _resolutions(resolutions)
    n = len(checked)
    return ConfigBatch(
        np.zeros((n, space.N_BLOCKS), np.int8),
        np.zeros((n, space.N_BLOCKS), np.int8),
        np.full((n, space.N_STAGES), min(space.DEPTH_CHOICES), np.int8),
        checked,
        width,
    )


def _resolutions(resolutions: Sequence[int]) -> np.ndarray:
    """The allowed resolutions as int32, refused by name (`resolutions[0]: ...`) if bad."""
    checked = check_array(
        "resolutions",
        resolutions,
        None,
        None,
        np.int32,
        bounds=(space.MIN_RESOLUTION, space.MAX_RESOLUTION),
    )
    if not len(checked):
        raise ValueError("resolutions: expected at least one resolution")
    return checked


def evolutionary_search(
    accuracy: Scorer,
    latency: Scorer,
    budget_ms: float,
    resolutions: Sequence[int],
    width: float = 1.0,
    settings: SearchSettings = SearchSettings(),
    feasible: Callable[[ConfigBatch], np.ndarray] | None = None,
) -> SearchResult:
    """The best predicted accuracy with predicted latency <= `budget_ms` (and `feasible`,
    e.g. a MACs budget). Deterministic for a seed."""
    if (
        isinstance(budget_ms, bool)
        or not isinstance(budget_ms, Real)
        or not (np.isfinite(budget_ms) and budget_ms > 0)
    ):
        raise ValueError(
            f"budget_ms: expected a positive number of milliseconds, got {show(budget_ms)}"
        )
    resolutions = np.sort(_resolutions(resolutions))
    width = check_width(width)
    rng = np.random.default_rng(settings.seed)

    def admissible(batch: ConfigBatch) -> tuple[np.ndarray, np.ndarray]:
        latencies = latency(batch)
        ok = latencies <= budget_ms
        if feasible is not None:
            ok &= feasible(batch)
        return ok, latencies

    fastest = fastest_configs(resolutions, width)
    fastest_ok, latencies = admissible(fastest)
    if not fastest_ok.any():
        best = int(np.argmin(latencies))
        raise ImpossibleBudget(
            f"latency_ms: no subnet meets {budget_ms:g} ms; the fastest reachable is "
            f"{latencies[best]:.2f} ms (kernel 3, expand 3, depth 2 at r={resolutions[best]})"
        )

    def draw(make: Callable[[int], ConfigBatch], n: int) -> ConfigBatch:
        """`n` admissible candidates from `make`, drawn in bulk (at most 20 rounds)."""
        found: list[ConfigBatch] = []
        count = 0
        for _ in range(20):
            candidates = make(max(2 * n, 16))
            ok, _ = admissible(candidates)
            found.append(_take(candidates, np.flatnonzero(ok)[: n - count]))
            count += int(ok.sum())
            if count >= n:
                break
        batch = _concat(found)
        if len(batch) < n:  # pad with the fastest subnets, which are admissible
            spare = np.flatnonzero(fastest_ok)
            batch = _concat(
                [batch, _take(fastest, spare[rng.integers(0, len(spare), n - len(batch))])]
            )
        return _take(batch, np.arange(n))

    population = draw(lambda n: _random(n, resolutions, width, rng), settings.population)
    scores = accuracy(population)
    n_parents, n_mutants = settings.split()
    n_children = settings.population - n_parents - n_mutants
    history: list[float] = []  # one entry per generation run
    best_seen, stale = -np.inf, 0
    for _ in range(settings.generations):
        order = np.argsort(-scores)[:n_parents]
        parents, parent_scores = _take(population, order), scores[order]
        mutants = draw(
            partial(self_mutate, parents, resolutions=resolutions, settings=settings, rng=rng),
            n_mutants,
        )
        children = draw(partial(crossover, parents, rng=rng), n_children)
        offspring = _concat([mutants, children])
        population = _concat([parents, offspring])
        scores = np.concatenate([parent_scores, accuracy(offspring)])
        history.append(float(scores.max()))
        if history[-1] > best_seen + 1e-9:
            best_seen, stale = history[-1], 0
        else:
            stale += 1
            if settings.patience and stale >= settings.patience:
                break
    best = int(np.argmax(scores))
    winner = _take(population, np.array([best]))
    return SearchResult(
        winner.config(0), float(scores[best]), float(latency(winner)[0]), len(history), history
    )


def self_mutate(
    parents: ConfigBatch,
    n: int,
    resolutions: np.ndarray,
    settings: SearchSettings,
    rng: np.random.Generator,
) -> ConfigBatch:
    """Copies of random parents with each gene redrawn with `mutate_prob`."""
    base = _take(parents, rng.integers(0, len(parents), n))
    ks, e, d, r = base.ks.copy(), base.e.copy(), base.d.copy(), base.r.copy()
    for genes, choices in ((ks, 3), (e, 3)):
        hit = rng.random(genes.shape) < settings.mutate_prob
        genes[hit] = rng.integers(0, choices, int(hit.sum()))
    hit = rng.random(d.shape) < settings.mutate_prob
    d[hit] = rng.choice(np.array(space.DEPTH_CHOICES, np.int8), int(hit.sum()))
    hit = rng.random(n) < settings.resolution_mutate_prob
    r[hit] = rng.choice(resolutions, int(hit.sum()))
    return ConfigBatch(ks, e, d, r, parents.w)


def crossover(parents: ConfigBatch, n: int, rng: np.random.Generator) -> ConfigBatch:
    """Each gene from one of two random parents."""
    a = _take(parents, rng.integers(0, len(parents), n))
    b = _take(parents, rng.integers(0, len(parents), n))

    def pick(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.where(rng.random(x.shape) < 0.5, x, y)

    return ConfigBatch(pick(a.ks, b.ks), pick(a.e, b.e), pick(a.d, b.d), pick(a.r, b.r), a.w)
