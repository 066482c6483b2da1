"""Search for the most accurate OFA-ResNet50 subnet within a budget (latency from a LUT, or
MACs): OFA's evolution over `ResNetConfig`s, then a hill climb from the best few.

The evolution is the finder's (parents, mutants, crossovers; every candidate drawn within
the budget, in bulk with a cap on attempts). The climb then takes, from each of the
`local_starts` best distinct configs, the best single change (one block's expand ratio, one
depth, one width, the next or previous resolution) within the budget while it improves the
predicted accuracy. Costs are computed once per config. Deterministic for a seed; a budget
below the cheapest subnet is refused at once, naming the cheapest reachable cost.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from ofa.resnet import (
    DEPTH_CHOICES,
    EXPAND_CHOICES,
    STEM_DEPTH_CHOICES,
    WIDTH_MULTS,
    ResNetConfig,
)
from ofa.search import ImpossibleBudget, SearchSettings

__all__ = ["ResNetSearchResult", "resnet_search"]

Accuracy = Callable[[Sequence[ResNetConfig]], np.ndarray]
Cost = Callable[[ResNetConfig], float]
MAX_DRAWS = 50  # candidates tried per child before a parent is kept instead
PAIR_UPS = 16  # single changes paired with cost-saving ones in each climbing step
PRICES = np.geomspace(0.05, 20, 13)  # of cost, in units of the mean gain per unit cost
DEFAULT_SETTINGS = SearchSettings()  # frozen, so safe as a default argument


@dataclass
class ResNetSearchResult:
    config: ResNetConfig
    accuracy: float
    cost: float
    history: list[float] = field(default_factory=list)  # best accuracy per generation / step


def resnet_search(
    accuracy: Accuracy,
    cost: Cost,
    budget: float,
    resolutions: Sequence[int],
    settings: SearchSettings = DEFAULT_SETTINGS,
    unit: str = "ms",
) -> ResNetSearchResult:
    """The best predicted accuracy with `cost` <= `budget` (in `unit`, for messages)."""
    allowed = sorted({int(r) for r in resolutions})
    if not allowed:
        raise ValueError("resolutions: expected at least one resolution")
    costs: dict[ResNetConfig, float] = {}

    def cost_of(config: ResNetConfig) -> float:
        if config not in costs:
            costs[config] = float(cost(config))
        return costs[config]

    cheapest = min((ResNetConfig.smallest(r) for r in allowed), key=cost_of)
    if cost_of(cheapest) > budget:
        raise ImpossibleBudget(
            f"budget: no ResNet50 subnet costs {budget:g} {unit} or less; the cheapest "
            f"reachable is {cost_of(cheapest):.2f} {unit} (the smallest at r={cheapest.r})"
        )
    rng = random.Random(settings.seed)

    def draw(make: Callable[[], ResNetConfig], fallback: ResNetConfig) -> ResNetConfig:
        for _ in range(MAX_DRAWS):
            candidate = make()
            if cost_of(candidate) <= budget:
                return candidate
        return fallback

    population = [
        draw(partial(ResNetConfig.sample, rng, allowed), cheapest)
        for _ in range(settings.population)
    ]
    scores = list(map(float, accuracy(population)))
    n_parents, n_mutants, n_crossovers = settings.split()
    history: list[float] = []
    for _ in range(settings.generations):
        order = sorted(range(len(population)), key=lambda i: -scores[i])[:n_parents]
        parents = [population[i] for i in order]
        children = []
        for _ in range(n_mutants):
            parent = rng.choice(parents)
            children.append(draw(partial(_mutate, parent, rng, allowed, settings), parent))
        for _ in range(n_crossovers):
            a, b = rng.choice(parents), rng.choice(parents)
            children.append(draw(partial(_cross, a, b, rng), a))
        population = parents + children
        scores = [scores[i] for i in order] + list(map(float, accuracy(children)))
        history.append(max(scores))
    ranked = sorted(dict(zip(population, scores, strict=True)).items(), key=lambda kv: -kv[1])
    best, best_score = ranked[0]
    for start, score in ranked[: settings.local_starts]:
        reached, reached_score, steps = _climb(
            start, score, accuracy, cost_of, budget, allowed, settings.local_steps
        )
        history += [max(best_score, s) for s in steps]
        if reached_score > best_score:
            best, best_score = reached, reached_score
    return ResNetSearchResult(best, best_score, cost_of(best), history)


def _mutate(
    parent: ResNetConfig, rng: random.Random, allowed: Sequence[int], settings: SearchSettings
) -> ResNetConfig:
    def maybe(value, choices):
        return rng.choice(choices) if rng.random() < settings.mutate_prob else value

    d = (maybe(parent.d[0], STEM_DEPTH_CHOICES),) + tuple(
        maybe(v, DEPTH_CHOICES) for v in parent.d[1:]
    )
    r = rng.choice(allowed) if rng.random() < settings.resolution_mutate_prob else parent.r
    return ResNetConfig(
        d,
        tuple(maybe(v, EXPAND_CHOICES) for v in parent.e),
        tuple(maybe(v, range(len(WIDTH_MULTS))) for v in parent.w),
        r,
    )


def _cross(a: ResNetConfig, b: ResNetConfig, rng: random.Random) -> ResNetConfig:
    def pick(x: tuple, y: tuple) -> tuple:
        return tuple(u if rng.random() < 0.5 else v for u, v in zip(x, y, strict=True))

    return ResNetConfig(pick(a.d, b.d), pick(a.e, b.e), pick(a.w, b.w), rng.choice((a.r, b.r)))


Patch = tuple[str, int, float]  # (field, index, value): one gene changed


def _patches(config: ResNetConfig, allowed: Sequence[int]) -> list[Patch]:
    """Every single change: a block's expand ratio, a depth, a width, or the next or
    previous allowed resolution."""
    out: list[Patch] = []
    for b in config.active_blocks:
        out += [("e", b, x) for x in EXPAND_CHOICES if x != config.e[b]]
    for i, value in enumerate(config.d):
        out += [
            ("d", i, x) for x in (STEM_DEPTH_CHOICES if i == 0 else DEPTH_CHOICES) if x != value
        ]
    for i, value in enumerate(config.w):
        out += [("w", i, x) for x in range(len(WIDTH_MULTS)) if x != value]
    position = allowed.index(config.r)
    out += [("r", 0, allowed[p]) for p in (position - 1, position + 1) if 0 <= p < len(allowed)]
    return out


def _apply(config: ResNetConfig, patches: Sequence[Patch]) -> ResNetConfig:
    genes: dict[str, list[float]] = {
        "d": list(config.d),
        "e": list(config.e),
        "w": list(config.w),
        "r": [config.r],
    }
    for name, index, value in patches:
        genes[name][index] = value
    d, e, w, r = (genes[name] for name in ("d", "e", "w", "r"))
    return ResNetConfig(tuple(map(int, d)), tuple(e), tuple(map(int, w)), int(r[0]))


def _repairs(
    base: ResNetConfig, singles: Sequence[Patch], gains: np.ndarray, deltas: np.ndarray
) -> list[ResNetConfig]:
    """`base` with the expand ratios that maximise the summed (estimated) gain less a price
    times the summed cost change, one config per price of `PRICES`: the points of a
    multiple-choice knapsack over the blocks' expand ratios, whatever the budget. Gains and
    cost changes are those of the single changes `singles` measured from the climb's
    config: additive estimates, checked exactly by the caller."""
    finite = np.isfinite(deltas)  # a change outside another constraint costs inf
    scale = np.abs(gains[finite]).sum() / max(np.abs(deltas[finite]).sum(), 1e-12)
    options: dict[int, list[int]] = {}
    for i, (name, block, _) in enumerate(singles):
        if name == "e" and finite[i]:
            options.setdefault(block, []).append(i)
    out = []
    for price in PRICES * scale:
        chosen = []
        for indices in options.values():
            values = [gains[i] - price * deltas[i] for i in indices]
            best = int(np.argmax(values))
            if values[best] > 0:  # better than the block's expand ratio as it is
                chosen.append(singles[indices[best]])
        out.append(_apply(base, chosen))
    return out


def _climb(
    start: ResNetConfig,
    score: float,
    accuracy: Accuracy,
    cost_of: Cost,
    budget: float,
    allowed: Sequence[int],
    max_steps: int,
) -> tuple[ResNetConfig, float, list[float]]:
    """While it improves `score` (at most `max_steps` times): the best admissible single
    change, or pair of changes (one of the PAIR_UPS single changes that gain most, whatever
    their cost, with one that saves cost), which gets past a budget that binds."""
    steps: list[float] = []
    for _ in range(max_steps):
        singles = _patches(start, allowed)
        moved = [_apply(start, [patch]) for patch in singles]
        gains = accuracy(moved) - score
        here = cost_of(start)
        ups = [singles[i] for i in np.argsort(-gains, kind="stable")[:PAIR_UPS] if gains[i] > 0]
        downs = [patch for patch, c in zip(singles, moved, strict=True) if cost_of(c) < here]
        pairs = [_apply(start, [up, down]) for up in ups for down in downs if up[:2] != down[:2]]
        deltas = np.array([cost_of(c) - here for c in moved])
        repaired = [
            config
            for base in [start, *(_apply(start, [up]) for up in ups)]
            for config in _repairs(base, singles, gains, deltas)
        ]
        candidates = [c for c in moved + pairs + repaired if cost_of(c) <= budget]
        if not candidates:
            break
        scores = accuracy(candidates)
        best = int(np.argmax(scores))
        if scores[best] <= score + 1e-9:
            break
        start, score = candidates[best], float(scores[best])
        steps.append(score)
    return start, score, steps
