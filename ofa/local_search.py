"""Local search for the evolutionary search: moves that exploit the additive latency model.

Every latency model here is, for a fixed resolution, a fixed cost plus one cost per active
block that depends only on that block's (kernel, expand) option; depth and resolution
(the *context*) decide which blocks run and at which size. The accuracy predictor is close
to additive in the same options. So a step from a config:

1. scores every change of one block's kernel alone or expand ratio alone (four per active
   block): their exact gains, and added, an estimate of changing both;
2. moves the config into each adjacent context (one stage one block deeper or shallower,
   the next or previous allowed resolution), keeping its genes;
3. in its own and in each adjacent context, picks one of the nine options per block for the
   largest sum of gains within the budget (a multiple-choice knapsack, solved by Lagrangian
   relaxation), and scores those proposals exactly.

`screen` does the third part for every context at once, from one config: a way out of the
context the evolution converged on.

The best proposal, or the best single change, replaces the config when it is better. Every
config returned passed the caller's `admissible` test (predicted latency within budget and
any other constraint); the additive model only guides the proposals.

Both MBConv families share the kernel, expand and depth choices and five elastic stages;
the block count is the batch's (ProxylessNAS adds a tail block that always runs, which no
depth move touches).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ofa import space
from ofa.batch import ConfigBatch

__all__ = ["Problem", "descend", "screen", "distinct_contexts"]

Scorer = Callable[[ConfigBatch], np.ndarray]

N_OPTIONS = len(space.KERNEL_CHOICES) * len(space.EXPAND_CHOICES)
OPTION_KS = np.repeat(np.arange(len(space.KERNEL_CHOICES)), len(space.EXPAND_CHOICES))
OPTION_E = np.tile(np.arange(len(space.EXPAND_CHOICES)), len(space.KERNEL_CHOICES))
MIN_GAIN = 1e-6  # above float32 rounding of a top-1 near 0.8 (6e-8), which varies with the batch
LOW_PRICE = np.log(1e-9)  # top-1 per ms: latency about free
SCREENED_PER_START = 20  # contexts scored exactly per config the screen returns
PRICE_STEPS = 12  # bisections of log(price) from LOW_PRICE up to 0: within a factor 1.005
# ONE_GENE[a, b]: option b differs from option a in exactly one of kernel and expand.
ONE_GENE = (OPTION_KS[:, None] == OPTION_KS[None, :]) != (OPTION_E[:, None] == OPTION_E[None, :])
# SAME_EXPAND[a, b]: the option with b's kernel and a's expand (SAME_KERNEL: the converse).
SAME_EXPAND = OPTION_KS[None, :] * len(space.EXPAND_CHOICES) + OPTION_E[:, None]
SAME_KERNEL = OPTION_KS[:, None] * len(space.EXPAND_CHOICES) + OPTION_E[None, :]


@dataclass(frozen=True)
class Problem:
    """What every step needs: the scorers, the budget test and the allowed resolutions."""

    accuracy: Scorer
    latency: Scorer
    admissible: Callable[[ConfigBatch], np.ndarray]
    budget_ms: float
    resolutions: np.ndarray  # sorted

    def option_costs(self, genes: ConfigBatch) -> np.ndarray:
        """(R, blocks, 9) latency of each block's options at each allowed resolution,
        measured on `genes[0]` with every block active (per block, only differences
        matter)."""
        n_r, n_blocks = len(self.resolutions), genes.ks.shape[1]
        full = genes.derive(
            np.repeat(genes.ks[:1], n_r, 0),
            np.repeat(genes.e[:1], n_r, 0),
            np.full((n_r, space.N_STAGES), space.MAX_DEPTH),
            self.resolutions,
        )
        costs = np.repeat(self.latency(full), n_blocks * N_OPTIONS).reshape(
            n_r, n_blocks, N_OPTIONS
        )
        others = ~np.eye(N_OPTIONS, dtype=bool)
        moves, row, block, option = _block_moves(full, np.ones((n_r, n_blocks), bool), others)
        costs[row, block, option] = self.latency(moves)
        return costs


def options(batch: ConfigBatch) -> np.ndarray:
    """(n, blocks) the option index (kernel * 3 + expand) of every block."""
    return batch.ks.astype(np.int64) * len(space.EXPAND_CHOICES) + batch.e


def with_options(batch: ConfigBatch, chosen: np.ndarray) -> ConfigBatch:
    return batch.derive(OPTION_KS[chosen], OPTION_E[chosen], batch.d, batch.r)


def take(batch: ConfigBatch, index: np.ndarray) -> ConfigBatch:
    return batch.derive(batch.ks[index], batch.e[index], batch.d[index], batch.r[index])


def concat(batches: list[ConfigBatch]) -> ConfigBatch:
    return batches[0].derive(
        np.concatenate([b.ks for b in batches]),
        np.concatenate([b.e for b in batches]),
        np.concatenate([b.d for b in batches]),
        np.concatenate([b.r for b in batches]),
    )


def propagate(batch: ConfigBatch) -> ConfigBatch:
    """The same subnets with each skipped block's genes copied from the block before it, so
    a move that deepens a stage repeats that stage's last block."""
    ks, e = batch.ks.copy(), batch.e.copy()
    active = batch.active
    for block in range(batch.ks.shape[1]):
        if block % space.MAX_DEPTH:
            skipped = ~active[:, block]
            ks[skipped, block] = ks[skipped, block - 1]
            e[skipped, block] = e[skipped, block - 1]
    return batch.derive(ks, e, batch.d, batch.r)


def _block_moves(
    batch: ConfigBatch, movable: np.ndarray, options_of: np.ndarray
) -> tuple[ConfigBatch, np.ndarray, np.ndarray, np.ndarray]:
    """Every config with one `movable` block set to another of the options its current one
    may change to (`options_of[current, option]`), and for each move its config's row,
    block and option."""
    current = options(batch)
    row, block, option = np.nonzero(movable[:, :, None] & options_of[current])
    chosen = current[row].copy()
    chosen[np.arange(len(row)), block] = option
    moved = batch.derive(OPTION_KS[chosen], OPTION_E[chosen], batch.d[row], batch.r[row])
    return moved, row, block, option


def _gains(
    scores: np.ndarray, batch: ConfigBatch, problem: Problem
) -> tuple[np.ndarray, ConfigBatch, np.ndarray]:
    """(n, blocks, 9) accuracy gain of each block's options (0 for the current one), from the
    exact gains of changing the kernel alone and the expand ratio alone, added (a skipped
    block gets its predecessor's gains, as `propagate` gives it its genes); and the best
    admissible of those single changes of each config, with its accuracy (-inf if none)."""
    n = len(batch)
    moves, row, block, option = _block_moves(batch, batch.active, ONE_GENE)
    accuracy = problem.accuracy(moves)
    exact = np.zeros((n, batch.ks.shape[1], N_OPTIONS))
    exact[row, block, option] = accuracy - scores[row]
    current = options(batch)
    kernel_gain = np.take_along_axis(exact, SAME_EXPAND[current], 2)  # kernel changed alone
    expand_gain = np.take_along_axis(exact, SAME_KERNEL[current], 2)  # expand changed alone
    gains = kernel_gain + expand_gain
    for b in range(batch.ks.shape[1]):
        if b % space.MAX_DEPTH:
            skipped = ~batch.active[:, b]
            gains[skipped, b] = gains[skipped, b - 1]
    pick, best = _best_per_row(n, row, np.where(problem.admissible(moves), accuracy, -np.inf))
    return gains, take(moves, pick), best


def _lagrange(values: np.ndarray, costs: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """Per row one option per block, maximising the summed value with summed cost within
    `capacity` (costs >= 0, every row's all-cheapest choice fits): the best choice for a
    price of latency, found by bisection on its logarithm between LOW_PRICE (about free:
    the most valuable options) and a price at which every row fits; a point on the convex
    hull of the trade-off."""
    blocks = np.arange(values.shape[1])[None, :]
    rows = np.arange(len(values))[:, None]

    values, costs = values.astype(np.float32), costs.astype(np.float32)  # half the traffic

    def choose(log_price: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        price = np.exp(log_price).astype(np.float32)[:, None, None]
        chosen = np.argmax(values - price * costs, axis=2)
        return chosen, costs[rows, blocks, chosen].sum(axis=1)

    low, high = np.full(len(values), LOW_PRICE), np.zeros(len(values))
    for _ in range(20):  # raise the price until every row fits
        over = choose(high)[1] > capacity
        if not over.any():
            break
        high = np.where(over, high + np.log(1e3), high)
    fits_low = choose(low)[1] <= capacity
    high = np.where(fits_low, low, high)  # the most valuable choice fits: take it
    for _ in range(PRICE_STEPS):
        middle = (low + high) / 2
        fits = choose(middle)[1] <= capacity
        high, low = np.where(fits, middle, high), np.where(fits, low, middle)
    return choose(high)[0]


def _repair(
    candidates: ConfigBatch, gains: np.ndarray, costs: np.ndarray, problem: Problem
) -> ConfigBatch:
    """Each candidate with the options that maximise its summed `gains` within the budget,
    latency costs from `costs` (per resolution) and the candidate's own latency. A skipped
    block gets option 0 (its genes do not matter); a candidate that cannot fit gets the
    cheapest options, and fails the caller's admissibility test."""
    active = candidates.active[:, :, None]
    cost = costs[np.searchsorted(problem.resolutions, candidates.r)]
    cheapest = cost.min(axis=2, keepdims=True)
    current = np.take_along_axis(cost, options(candidates)[:, :, None], 2)
    capacity = (
        problem.budget_ms
        - problem.latency(candidates)
        + ((current - cheapest) * active).sum(axis=(1, 2))
    )
    extra = (cost - cheapest) * active  # latency above the block's cheapest option
    chosen = np.argmin(extra, axis=2)
    fits = capacity >= 0
    chosen[fits] = _lagrange((gains * active)[fits], extra[fits], capacity[fits])
    return with_options(candidates, chosen)


def _context_moves(batch: ConfigBatch, resolutions: np.ndarray) -> tuple[ConfigBatch, np.ndarray]:
    """Each config in each adjacent context: one stage one block deeper or shallower, or
    the next or previous allowed resolution; with the row each came from."""
    shifts = np.vstack([np.eye(space.N_STAGES, dtype=np.int64) * s for s in (-1, 1)])  # (10, 5)
    d = batch.d[:, None, :] + shifts[None]  # (n, 10, 5)
    position = np.searchsorted(resolutions, batch.r)[:, None] + np.array([-1, 1])  # (n, 2)
    depth_ok = np.isin(d, space.DEPTH_CHOICES).all(axis=2)
    r_ok = (position >= 0) & (position < len(resolutions))
    depth_rows, depth_move = np.nonzero(depth_ok)
    r_rows, r_move = np.nonzero(r_ok)
    rows = np.concatenate([depth_rows, r_rows])
    moved = batch.derive(
        batch.ks[rows],
        batch.e[rows],
        np.concatenate([d[depth_rows, depth_move], batch.d[r_rows]]),
        np.concatenate([batch.r[depth_rows], resolutions[position[r_rows, r_move]]]),
    )
    return moved, rows


def _best_per_row(n: int, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each of `n` configs, the index of its best candidate (the first of equals; rows
    says whose each candidate is) and that score (-inf: none admissible)."""
    best = np.full(n, -np.inf)
    np.maximum.at(best, rows, scores)
    pick = np.zeros(n, np.int64)
    hit = np.flatnonzero(scores == best[rows])[::-1]
    pick[rows[hit]] = hit  # written last to first, so the first equal wins
    return pick, best


def _step(
    problem: Problem, batch: ConfigBatch, scores: np.ndarray, costs: np.ndarray
) -> tuple[ConfigBatch, np.ndarray, np.ndarray]:
    """The best neighbour of each config (see the module docstring), its accuracy, and the
    gains of each config's options (reused by `screen`)."""
    n = len(batch)
    gains, single, single_scores = _gains(scores, batch, problem)
    moved, rows = _context_moves(batch, problem.resolutions)
    candidates = concat([batch, moved])
    rows = np.concatenate([np.arange(n), rows])
    proposals = _repair(candidates, gains[rows], costs, problem)
    proposed = np.where(problem.admissible(proposals), problem.accuracy(proposals), -np.inf)
    pick, best = _best_per_row(n, rows, proposed)
    use_single = single_scores > best
    index = np.where(use_single, len(proposals) + np.arange(n), pick)
    return take(concat([proposals, single]), index), np.maximum(best, single_scores), gains


def _first_of_equals(batch: ConfigBatch) -> np.ndarray:
    """(n,) bool: the first row of each distinct config (genes propagated, so equal rows
    are equal subnets)."""
    rows = np.hstack([batch.ks, batch.e, batch.d, batch.r[:, None]])
    first = np.zeros(len(batch), bool)
    first[np.unique(rows, axis=0, return_index=True)[1]] = True
    return first


def _replace(batch: ConfigBatch, rows: np.ndarray, new: ConfigBatch) -> ConfigBatch:
    """`batch` with `rows` replaced by `new`."""
    ks, e, d, r = batch.ks.copy(), batch.e.copy(), batch.d.copy(), batch.r.copy()
    ks[rows], e[rows], d[rows], r[rows] = new.ks, new.e, new.d, new.r
    return batch.derive(ks, e, d, r)


def descend(
    problem: Problem, batch: ConfigBatch, scores: np.ndarray, max_steps: int
) -> tuple[ConfigBatch, np.ndarray, np.ndarray, list[float]]:
    """Steps from each admissible config while it improves (at most `max_steps`); a config
    that stops improving, or meets another, stops costing evaluations. Returns the configs
    reached, their accuracy, the gains of each one's last step and the best accuracy after
    each step."""
    batch, scores = propagate(batch), scores.copy()
    costs = problem.option_costs(batch)
    gains = np.zeros((len(batch), batch.ks.shape[1], N_OPTIONS))
    moving = _first_of_equals(batch)
    history: list[float] = []
    for _ in range(max_steps):
        rows = np.flatnonzero(moving)
        if not len(rows):
            break
        moved, moved_scores, gains[rows] = _step(problem, take(batch, rows), scores[rows], costs)
        better = moved_scores > scores[rows] + MIN_GAIN
        moving[rows[~better]] = False
        if better.any():
            batch = _replace(batch, rows[better], propagate(take(moved, np.flatnonzero(better))))
            scores[rows[better]] = moved_scores[better]
            moving &= _first_of_equals(batch)
            history.append(float(scores.max()))
    return batch, scores, gains, history


def _every_context(config: ConfigBatch, resolutions: np.ndarray) -> ConfigBatch:
    """`config`'s genes in every (depths, resolution) context."""
    depths = np.array(np.meshgrid(*[space.DEPTH_CHOICES] * space.N_STAGES, indexing="ij"))
    depths = depths.reshape(space.N_STAGES, -1).T
    n = len(depths) * len(resolutions)
    return config.derive(
        np.repeat(config.ks[:1], n, 0),
        np.repeat(config.e[:1], n, 0),
        np.repeat(depths, len(resolutions), 0),
        np.tile(resolutions, len(depths)),
    )


def _context_effects(
    problem: Problem, best: ConfigBatch, score: float
) -> tuple[np.ndarray, np.ndarray]:
    """(5, 3) accuracy change of `best[0]` with one stage at each depth, and (R,) with
    each allowed resolution: an additive estimate of what a context is worth."""
    depth, r = [], []
    for stage in range(space.N_STAGES):
        for choice in space.DEPTH_CHOICES:
            d = best.d[:1].copy()
            d[0, stage] = choice
            depth.append(best.derive(best.ks[:1], best.e[:1], d, best.r[:1]))
    for resolution in problem.resolutions:
        r.append(best.derive(best.ks[:1], best.e[:1], best.d[:1], np.array([resolution])))
    effects = problem.accuracy(concat(depth + r)) - score
    return effects[: len(depth)].reshape(space.N_STAGES, -1), effects[len(depth) :]


def screen(
    problem: Problem, best: ConfigBatch, score: float, gains: np.ndarray, count: int
) -> tuple[ConfigBatch, np.ndarray]:
    """The `count` best of `best[0]`'s genes repaired into every context with its gains,
    one per context: starting points far from where the evolution converged. Only the
    SCREENED_PER_START * `count` best by an additive estimate (the context's depth and
    resolution effects plus the repair's summed gains) are scored exactly."""
    best = propagate(best)
    candidates = _every_context(best, problem.resolutions)
    proposals = _repair(
        candidates,
        np.repeat(gains[:1], len(candidates), 0),
        problem.option_costs(best),
        problem,
    )
    depth_effect, r_effect = _context_effects(problem, best, score)
    chosen = options(proposals)
    estimate = (
        depth_effect[np.arange(space.N_STAGES), proposals.d - min(space.DEPTH_CHOICES)].sum(1)
        + r_effect[np.searchsorted(problem.resolutions, proposals.r)]
        + (np.take_along_axis(gains[:1], chosen[:, :, None], 2)[:, :, 0] * proposals.active).sum(1)
    )
    estimate = np.where(problem.admissible(proposals), estimate, -np.inf)
    shortlist = np.argsort(-estimate, kind="stable")[: SCREENED_PER_START * count]
    shortlist = shortlist[np.isfinite(estimate[shortlist])]
    proposals = take(proposals, shortlist)
    if not len(shortlist):  # another budget (MACs, parameters) refused every repair
        return proposals, np.zeros(0)
    scores = problem.accuracy(proposals)
    order = np.argsort(-scores, kind="stable")[:count]
    return take(proposals, order), scores[order]


def distinct_contexts(
    batch: ConfigBatch, scores: np.ndarray, count: int
) -> tuple[ConfigBatch, np.ndarray]:
    """The best config of each of the `count` best (depths, resolution) contexts."""
    key = batch.d.astype(np.int64) @ (len(space.DEPTH_CHOICES) ** np.arange(space.N_STAGES))
    key = key * (space.MAX_RESOLUTION + 1) + batch.r
    order = np.argsort(-scores, kind="stable")
    _, first = np.unique(key[order], return_index=True)
    chosen = order[np.sort(first)][:count]
    return take(batch, chosen), scores[chosen]
