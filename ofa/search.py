"""Search for the most accurate subnet under a latency budget: OFA's evolution finder,
vectorised over the population (numpy arrays, one predictor call per generation), followed
by a local search that exploits the additive latency model (`ofa.local_search`).

The evolution alone converges early: at tight budgets its population collapses onto one
(depths, resolution) context and more generations return the same subnet. So after a few
generations the best configs of a few distinct contexts descend (each step: every
single-block change, and a knapsack repair in the config's own and each adjacent context);
then every context is screened with the best config's option gains, and the best few of
those descend too. It never loops forever: a budget below the fastest reachable latency is
refused at once, naming that latency, and candidates that miss the constraint are drawn in
bulk with a cap on attempts rather than one at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from itertools import accumulate
from numbers import Real

import numpy as np

from ofa import space
from ofa.batch import ConfigBatch, check_array
from ofa.config import SubnetConfig, check_int, check_width, show
from ofa.local_search import Problem, concat, descend, distinct_contexts, screen, take

__all__ = [
    "SearchSettings",
    "SearchResult",
    "ImpossibleBudget",
    "evolutionary_search",
    "fastest_configs",
    "make_problem",
    "evolve",
    "refine",
]

Scorer = Callable[[ConfigBatch], np.ndarray]


class ImpossibleBudget(ValueError):
    """No subnet of the space meets the constraint."""


@dataclass(frozen=True)
class SearchSettings:
    """Evolution as OFA's finder (each generation keeps the best `parent_ratio` of the
    population and adds `population` children: `mutation_ratio` of them mutants, the rest
    crossovers), then the local search: `local_starts` contexts from the evolution, and
    `screened` from each of at most `screens` screens, descend for at most `local_steps`
    steps each (`local_starts=0`: OFA's plain evolution)."""

    population: int = 100
    generations: int = 5
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    resolution_mutate_prob: float = 0.1
    patience: int = 0  # stop after this many generations without improvement (0: never)
    local_starts: int = 3
    screened: int = 6
    screens: int = 2
    local_steps: int = 20
    seed: int = 0

    def __post_init__(self) -> None:
        for name, bounds in (
            ("population", (2, 10**6)),
            ("generations", (0, 10**9)),
            ("patience", (0, 10**9)),
            ("local_starts", (0, 10**4)),
            ("screened", (0, 10**4)),
            ("screens", (0, 10**4)),
            ("local_steps", (0, 10**6)),
            ("seed", (0, 2**63 - 1)),
        ):
            check_int(name, getattr(self, name), bounds=bounds)
        for name in ("parent_ratio", "mutation_ratio", "mutate_prob", "resolution_mutate_prob"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Real) or not 0 <= float(value) <= 1:
                raise ValueError(f"{name}: expected a number in 0..1, got {show(value)}")
        parents, mutants, _ = self.split()
        if parents + mutants > self.population:
            raise ValueError(
                f"population: {self.population} cannot hold {parents} parents and "
                f"{mutants} mutants (parent_ratio, mutation_ratio)"
            )

    def split(self) -> tuple[int, int, int]:
        """(parents, mutants, crossovers) per generation."""
        mutants = int(self.population * self.mutation_ratio)
        return max(2, int(self.population * self.parent_ratio)), mutants, self.population - mutants


@dataclass
class SearchResult:
    config: SubnetConfig
    accuracy: float
    latency_ms: float
    generations: int
    history: list[float] = field(default_factory=list)  # best accuracy per generation


def _random(
    n: int, resolutions: np.ndarray, like: ConfigBatch, rng: np.random.Generator
) -> ConfigBatch:
    """`n` uniform subnets of `like`'s supernet."""
    family = like.family_space
    return like.derive(
        rng.integers(0, len(family.kernel_choices), (n, family.n_blocks), dtype=np.int8),
        rng.integers(0, len(family.expand_choices), (n, family.n_blocks), dtype=np.int8),
        rng.choice(np.array(family.depth_choices, np.int8), (n, family.n_stages)),
        rng.choice(resolutions, n),
    )


def fastest_configs(
    resolutions: Sequence[int], width: float, family: str = space.MOBILENET_V3.name
) -> ConfigBatch:
    """The smallest subnet (kernel 3, expand 3, depth 2) at each resolution: the fastest on
    any device whose latency grows with size, and the lower bound the budget check uses."""
    checked = _resolutions(resolutions)
    n, f = len(checked), space.family_named(family)
    return ConfigBatch(
        np.zeros((n, f.n_blocks), np.int8),
        np.zeros((n, f.n_blocks), np.int8),
        np.full((n, f.n_stages), min(f.depth_choices), np.int8),
        checked,
        check_width(width, f),
        f.name,
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
    family: str = space.MOBILENET_V3.name,
) -> SearchResult:
    """The best predicted accuracy with predicted latency <= `budget_ms` (and `feasible`,
    e.g. a MACs budget) among the subnets of supernet (`family`, `width`). Deterministic
    for a seed."""
    problem, spare = make_problem(
        accuracy, latency, budget_ms, resolutions, width, feasible, family
    )
    population, scores, history = evolve(problem, spare, settings)
    reached, reached_scores, refined = refine(problem, population, scores, settings)
    population, scores = concat([population, reached]), np.concatenate([scores, reached_scores])
    best = int(np.argmax(scores))
    winner = take(population, np.array([best]))
    return SearchResult(
        winner.config(0),
        float(scores[best]),
        float(latency(winner)[0]),
        len(history),
        list(accumulate(history + refined, max)),
    )


def make_problem(
    accuracy: Scorer,
    latency: Scorer,
    budget_ms: float,
    resolutions: Sequence[int],
    width: float,
    feasible: Callable[[ConfigBatch], np.ndarray] | None,
    family: str = space.MOBILENET_V3.name,
) -> tuple[Problem, ConfigBatch]:
    """The checked arguments as a Problem, and the fastest subnets that meet it (padding for
    draws that find too few); ImpossibleBudget, naming the fastest reachable latency, if
    none does."""
    if (
        isinstance(budget_ms, bool)
        or not isinstance(budget_ms, Real)
        or not (np.isfinite(budget_ms) and budget_ms > 0)
    ):
        raise ValueError(
            f"budget_ms: expected a positive number of milliseconds, got {show(budget_ms)}"
        )
    allowed = np.sort(_resolutions(resolutions))
    fastest = fastest_configs(allowed, width, family)

    def admissible(batch: ConfigBatch, latencies: np.ndarray | None = None) -> np.ndarray:
        ok = (latency(batch) if latencies is None else latencies) <= budget_ms
        return ok & feasible(batch) if feasible is not None else ok

    latencies = latency(fastest)
    fastest_ok = admissible(fastest, latencies)
    if not fastest_ok.any():
        best = int(np.argmin(latencies))
        raise ImpossibleBudget(
            f"latency_ms: no subnet meets {budget_ms:g} ms; the fastest reachable is "
            f"{latencies[best]:.2f} ms (kernel 3, expand 3, depth 2 at r={allowed[best]})"
        )
    problem = Problem(accuracy, latency, admissible, float(budget_ms), allowed)
    return problem, take(fastest, np.flatnonzero(fastest_ok))


def evolve(
    problem: Problem, spare: ConfigBatch, settings: SearchSettings
) -> tuple[ConfigBatch, np.ndarray, list[float]]:
    """OFA's evolution: the last population, its accuracy and the best accuracy of each
    generation. `spare` (admissible fastest subnets) pads a draw that finds too few."""
    rng = np.random.default_rng(settings.seed)

    def draw(make: Callable[[int], ConfigBatch], n: int) -> ConfigBatch:
        """`n` admissible candidates from `make`, drawn in bulk (at most 20 rounds)."""
        found: list[ConfigBatch] = []
        count = 0
        for _ in range(20):
            candidates = make(max(2 * n, 16))
            ok = problem.admissible(candidates)
            found.append(take(candidates, np.flatnonzero(ok)[: n - count]))
            count += int(ok.sum())
            if count >= n:
                break
        batch = concat(found)
        if len(batch) < n:
            batch = concat([batch, take(spare, rng.integers(0, len(spare), n - len(batch)))])
        return take(batch, np.arange(n))

    resolutions = problem.resolutions
    population = draw(lambda n: _random(n, resolutions, spare, rng), settings.population)
    scores = problem.accuracy(population)
    n_parents, n_mutants, n_crossovers = settings.split()
    history: list[float] = []  # one entry per generation run
    best_seen, stale = -np.inf, 0
    for _ in range(settings.generations):
        order = np.argsort(-scores, kind="stable")[:n_parents]
        parents, parent_scores = take(population, order), scores[order]
        mutants = draw(
            partial(self_mutate, parents, resolutions=resolutions, settings=settings, rng=rng),
            n_mutants,
        )
        children = draw(partial(crossover, parents, rng=rng), n_crossovers)
        offspring = concat([mutants, children])
        population = concat([parents, offspring])
        scores = np.concatenate([parent_scores, problem.accuracy(offspring)])
        history.append(float(scores.max()))
        if history[-1] > best_seen + 1e-9:
            best_seen, stale = history[-1], 0
        else:
            stale += 1
            if settings.patience and stale >= settings.patience:
                break
    return population, scores, history


def refine(
    problem: Problem, population: ConfigBatch, scores: np.ndarray, settings: SearchSettings
) -> tuple[ConfigBatch, np.ndarray, list[float]]:
    """The local phase: the best configs of `local_starts` distinct contexts descend; every
    context is screened with the gains of the best config reached, and the `screened` best
    descend too, again while that improves (`screens` times at most). Returns the configs
    reached with their accuracy, and the best accuracy after each step."""
    if not settings.local_starts:
        return take(population, np.arange(0)), scores[:0], []
    starts, start_scores = distinct_contexts(population, scores, settings.local_starts)
    reached, reached_scores, gains, history = descend(
        problem, starts, start_scores, settings.local_steps
    )
    kept, kept_scores = [reached], [reached_scores]
    best_score = -np.inf
    for _ in range(settings.screens if settings.screened else 0):
        if reached_scores.max() <= best_score:
            break
        best = np.array([int(np.argmax(reached_scores))])
        best_score = float(reached_scores[best[0]])
        screened, screened_scores = screen(
            problem, take(reached, best), best_score, gains[best], settings.screened
        )
        if not len(screened):
            break
        reached, reached_scores, gains, more = descend(
            problem, screened, screened_scores, settings.local_steps
        )
        kept, kept_scores = kept + [reached], kept_scores + [reached_scores]
        history += more
    return concat(kept), np.concatenate(kept_scores), history


def self_mutate(
    parents: ConfigBatch,
    n: int,
    resolutions: np.ndarray,
    settings: SearchSettings,
    rng: np.random.Generator,
) -> ConfigBatch:
    """Copies of random parents with each gene redrawn with `mutate_prob`."""
    base = take(parents, rng.integers(0, len(parents), n))
    ks, e, d, r = base.ks.copy(), base.e.copy(), base.d.copy(), base.r.copy()
    family = parents.family_space
    for genes, choices in ((ks, family.kernel_choices), (e, family.expand_choices)):
        hit = rng.random(genes.shape) < settings.mutate_prob
        genes[hit] = rng.integers(0, len(choices), int(hit.sum()))
    hit = rng.random(d.shape) < settings.mutate_prob
    d[hit] = rng.choice(np.array(family.depth_choices, np.int8), int(hit.sum()))
    hit = rng.random(n) < settings.resolution_mutate_prob
    r[hit] = rng.choice(resolutions, int(hit.sum()))
    return parents.derive(ks, e, d, r)


def crossover(parents: ConfigBatch, n: int, rng: np.random.Generator) -> ConfigBatch:
    """Each gene from one of two random parents."""
    a = take(parents, rng.integers(0, len(parents), n))
    b = take(parents, rng.integers(0, len(parents), n))

    def pick(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return np.where(rng.random(x.shape) < 0.5, x, y)

    return a.derive(pick(a.ks, b.ks), pick(a.e, b.e), pick(a.d, b.d), pick(a.r, b.r))
