"""Ranking items with a pairwise comparator: pure, and independent of language models.

`compare(pairs)` takes a list of (a, b) pairs and returns, for each, the probability that a beats b.
Every method asks for its comparisons in batches, one batch per round, so a comparator backed by a
model sees them in bulk (and its cache sees them at once). `comparisons` counts the pairs asked;
a comparator that asks its model both orders of a pair spends two prompts on one comparison.

* `all-pairs`: every pair once; the score is the number of wins (0.5 for an even answer), ties
  broken by the summed probabilities. TradExpert's relaxed sort: it needs no transitivity.
* `bubble`: bubble sort in its parallel form (odd-even transposition: each round compares disjoint
  neighbours), N rounds, N(N-1)/2 comparisons; the paper's ablation.
* `quicksort`: random pivots; every partition of a round is compared against its pivot in one batch.
* `budgeted`: rounds of pairs chosen to be informative, fitted with Bradley-Terry after each round,
  then all pairs among the leading candidates; never more than `budget` comparisons, and never
  fewer than `minimum_budget` (refused). Equal strengths are ordered by a seeded permutation, not
  by input order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Hashable, Sequence

import numpy as np

METHODS = ("all-pairs", "budgeted", "bubble", "quicksort")
Comparator = Callable[[list[tuple[Hashable, Hashable]]], Sequence[float]]


@dataclass
class Ranking:
    """Items best first, each item's score (higher is better), and what it took to get there."""

    order: list[Hashable]
    scores: dict[Hashable, float]
    comparisons: int
    rounds: int
    cycles: int  # directed 3-cycles (A>B>C>A) among the comparisons made
    cycle_examples: list[tuple[Hashable, Hashable, Hashable]] = field(default_factory=list)
    compared: list[tuple[Hashable, Hashable, float]] = field(default_factory=list)  # (a, b, P(a beats b))

    def top(self, k: int) -> list[Hashable]:
        return self.order[:k]


class _Asker:
    """Counts comparisons and rounds, enforces a budget, and records every answer."""

    def __init__(self, items: Sequence[Hashable], compare: Comparator, budget: int | None):
        self.items = list(items)
        self.compare = compare
        self.budget = budget
        self.rounds = 0
        self.results = np.full((len(items), len(items)), np.nan)  # results[i, j] = P(i beats j), as asked
        self.log: list[tuple[int, int, float]] = []

    @property
    def used(self) -> int:
        return len(self.log)

    @property
    def left(self) -> int:
        return math.inf if self.budget is None else self.budget - self.used

    def known(self, i: int, j: int) -> bool:
        return not (np.isnan(self.results[i, j]) and np.isnan(self.results[j, i]))

    def ask(self, pairs: list[tuple[int, int]]) -> np.ndarray:
        if not pairs:
            return np.empty(0)
        if len(pairs) > self.left:
            raise ValueError(f"{len(pairs)} more comparisons would exceed the budget of {self.budget}")
        answers = np.asarray(self.compare([(self.items[i], self.items[j]) for i, j in pairs]), dtype=float).reshape(-1)
        if len(answers) != len(pairs) or not np.all((answers >= 0) & (answers <= 1)):
            raise ValueError("compare must return one probability in [0, 1] per pair")
        first, second = np.array(pairs).T
        self.results[first, second] = answers
        self.log.extend((i, j, p) for (i, j), p in zip(pairs, answers.tolist()))
        self.rounds += 1
        return answers

    def beats(self) -> np.ndarray:
        """wins[i, j] = P(i beats j) for every compared pair, in both orientations; NaN elsewhere.
        A pair asked both ways counts both answers (their mean, the second read from the other
        side), so an answer that contradicts the other is neither lost nor overwritten."""
        asked = ~np.isnan(self.results)
        forward = np.where(asked, self.results, 0.0)
        backward = np.where(asked.T, 1 - self.results.T, 0.0)
        count = asked.astype(float) + asked.T.astype(float)
        with np.errstate(invalid="ignore"):
            return np.where(count > 0, (forward + backward) / count, np.nan)

    def finish(self, order: list[int], scores: np.ndarray) -> Ranking:
        cycles, examples = count_cycles(self.beats())
        return Ranking(
            order=[self.items[i] for i in order],
            scores={self.items[i]: float(scores[i]) for i in range(len(self.items))},
            comparisons=self.used,
            rounds=self.rounds,
            cycles=cycles,
            cycle_examples=[tuple(self.items[i] for i in triple) for triple in examples],
            compared=[(self.items[i], self.items[j], p) for i, j, p in self.log],
        )


def count_cycles(wins: np.ndarray, examples: int = 5) -> tuple[int, list[tuple[int, int, int]]]:
    """Directed 3-cycles among decided comparisons (P > 0.5 is a win; NaN and 0.5 are no edge)."""
    beat = np.nan_to_num(wins, nan=0.5) > 0.5
    adjacency = beat.astype(np.int64)
    two_steps = adjacency @ adjacency
    total = int(np.trace(two_steps @ adjacency)) // 3
    found: list[tuple[int, int, int]] = []
    if total:
        # i beats j, j beats k, k beats i: the pairs (k, i) with a two-step path from i to k.
        for i, k in zip(*np.nonzero(beat.T & (two_steps > 0))):
            j = int(np.flatnonzero(beat[i] & beat[:, k])[0])
            triple = (int(i), j, int(k))
            if min(triple) == triple[0]:
                found.append(triple)
            if len(found) == examples:
                break
    return total, found


def all_pairs(asker: _Asker, candidates: list[int] | None = None) -> tuple[list[int], np.ndarray]:
    """Wins among `candidates` (all items when None), after asking the pairs not yet known."""
    members = list(range(len(asker.items))) if candidates is None else list(candidates)
    asked = ~np.isnan(asker.results[np.ix_(members, members)])
    unknown = ~(asked | asked.T)
    asker.ask([(members[x], members[y]) for x, y in zip(*np.nonzero(np.triu(unknown, 1)))])
    wins = asker.beats()[np.ix_(members, members)]
    hard = np.where(np.isnan(wins), 0.0, np.where(wins > 0.5, 1.0, np.where(wins == 0.5, 0.5, 0.0))).sum(axis=1)
    soft = np.nansum(wins, axis=1)
    order = sorted(range(len(members)), key=lambda x: (-hard[x], -soft[x], x))
    scores = hard + soft / (len(members) + 1) ** 2  # wins first; summed probabilities only break ties
    return [members[x] for x in order], scores


def bubble(asker: _Asker) -> tuple[list[int], np.ndarray]:
    """Odd-even transposition sort, best first: swap neighbours when the later one wins."""
    order = list(range(len(asker.items)))
    for round_number in range(len(order)):
        positions = list(range(round_number % 2, len(order) - 1, 2))
        answers = asker.ask([(order[p], order[p + 1]) for p in positions])
        for p, answer in zip(positions, answers):
            if answer < 0.5:
                order[p], order[p + 1] = order[p + 1], order[p]
    return order, _positional(order)


def quicksort(asker: _Asker, seed: int) -> tuple[list[int], np.ndarray]:
    """Random pivots; each round compares every open partition's members with its pivot at once."""
    rng = np.random.default_rng(seed)
    parts: list[list[int]] = [list(range(len(asker.items)))]
    while any(len(part) > 1 for part in parts):
        pivots = [part[int(rng.integers(len(part)))] if len(part) > 1 else None for part in parts]
        pairs = [(member, pivot) for part, pivot in zip(parts, pivots) if pivot is not None for member in part if member != pivot]
        answers = dict(zip(pairs, asker.ask(pairs)))
        next_parts: list[list[int]] = []
        for part, pivot in zip(parts, pivots):
            if pivot is None:
                next_parts.append(part)
                continue
            better = [m for m in part if m != pivot and answers[(m, pivot)] > 0.5]
            worse = [m for m in part if m != pivot and answers[(m, pivot)] <= 0.5]
            next_parts.extend(p for p in (better, [pivot], worse) if p)
        parts = next_parts
    order = [part[0] for part in parts]
    return order, _positional(order)


def bradley_terry(n: int, log: list[tuple[int, int, float]], prior: float = 0.1, iterations: int = 300) -> np.ndarray:
    """Strengths s with P(i beats j) = sigmoid(s_i - s_j), fitted by Newton steps on the (soft)
    outcomes with a Gaussian prior (uncompared items stay at 0)."""
    strengths = np.zeros(n)
    if not log:
        return strengths
    first = np.array([i for i, _, _ in log])
    second = np.array([j for _, j, _ in log])
    outcome = np.array([p for _, _, p in log])
    for _ in range(iterations):
        p = 1 / (1 + np.exp(strengths[second] - strengths[first]))
        residual = outcome - p
        gradient = np.bincount(first, residual, n) - np.bincount(second, residual, n) - prior * strengths
        curvature = p * (1 - p)
        diagonal = np.bincount(first, curvature, n) + np.bincount(second, curvature, n) + prior
        step = gradient / diagonal
        strengths += step
        if np.abs(step).max() < 1e-6:
            break
    return strengths


def default_budget(n: int, k: int) -> int:
    """What `budgeted` spends unless told: all pairs among about 1.25K leading candidates plus
    about four comparisons per item to find them (never more than all pairs)."""
    candidates = _candidates(n, k)
    return min(n * (n - 1) // 2, candidates * (candidates - 1) // 2 + 4 * n)


def _candidates(n: int, k: int) -> int:
    return min(n, k + max(2, k // 4))


def minimum_budget(n: int, k: int) -> int:
    """The fewest comparisons `budgeted` works with: every pair among the K leaders, and a screen
    that meets every item about twice to find them (never more than all pairs)."""
    k = min(k, n)
    return min(n * (n - 1) // 2, n + k * (k - 1) // 2)


def _strength_order(strengths: np.ndarray, tiebreak: np.ndarray) -> np.ndarray:
    """Strongest first; equal strengths (items not yet compared, above all) in a seeded random
    order, never the input order (for tickers, alphabetical)."""
    return np.lexsort((tiebreak, -strengths))


def budgeted(asker: _Asker, k: int, seed: int) -> tuple[list[int], np.ndarray]:
    """Screen with random pairings, sharpen the Bradley-Terry order near the top-K boundary, then
    settle the leading candidates with all pairs among them (all within the budget)."""
    n = len(asker.items)
    budget = int(min(asker.left, n * (n - 1) // 2))
    candidates = _candidates(n, k)
    while candidates > min(k, n) and (candidates * (candidates - 1) // 2 > budget // 2 or candidates * (candidates - 1) // 2 + n > budget):
        candidates -= 1
    final = candidates * (candidates - 1) // 2
    search = budget - final
    rng = np.random.default_rng(seed)
    tiebreak = rng.permutation(n)
    screen = max(min(search // 2, 3 * n), min(search, n))  # every item meets about two others first
    asker.ask(_random_pairs(asker, n, screen, rng))
    strengths = bradley_terry(n, asker.log)
    while True:
        spend = min(asker.left - final, max(n // 2, 1))
        if spend <= 0:
            break
        pairs = _informative_pairs(asker, _strength_order(strengths, tiebreak), candidates, spend)
        if not pairs:
            break
        asker.ask(pairs)
        strengths = bradley_terry(n, asker.log)
    by_strength = list(_strength_order(strengths, tiebreak))
    leaders, _ = all_pairs(asker, sorted(int(i) for i in by_strength[:candidates]))
    order = leaders + [int(i) for i in by_strength if int(i) not in set(leaders)]
    return order, _positional(order)


def _random_pairs(asker: _Asker, n: int, count: int, rng: np.random.Generator) -> list[tuple[int, int]]:
    """Up to `count` distinct unknown pairs, spread so each item meets about the same number."""
    pairs: list[tuple[int, int]] = []
    seen: set[tuple[int, int]] = set()
    for _ in range(4 * max(1, count // max(n // 2, 1)) + 4):
        permutation = rng.permutation(n)
        for a, b in zip(permutation[0::2], permutation[1::2]):
            key = (min(a, b), max(a, b))
            if len(pairs) >= count:
                return pairs
            if key not in seen and not asker.known(int(a), int(b)):
                seen.add(key)
                pairs.append((int(a), int(b)))
    return pairs


def _informative_pairs(asker: _Asker, order: np.ndarray, candidates: int, count: int) -> list[tuple[int, int]]:
    """Unknown pairs of items close in strength (`order`: strongest first), nearest the candidate
    boundary first (where the order decides who enters the final round)."""
    n = len(order)
    boundary = min(candidates, n - 1)
    scored = []
    for distance in (1, 2, 3, 4):
        for position in range(n - distance):
            a, b = int(order[position]), int(order[position + distance])
            if not asker.known(a, b):
                scored.append((abs(position + distance / 2 - boundary) + 2 * distance, a, b))
    scored.sort()
    pairs, used = [], set()
    for _, a, b in scored:
        if len(pairs) == count:
            break
        if (a, b) not in used:
            used.add((a, b))
            pairs.append((a, b))
    return pairs


def _positional(order: list[int]) -> np.ndarray:
    scores = np.empty(len(order))
    scores[order] = np.arange(len(order), 0, -1, dtype=float)
    return scores


def rank(items: Sequence[Hashable], compare: Comparator, method: str = "all-pairs", k: int = 5, budget: int | None = None, seed: int = 0) -> Ranking:
    """Order `items` best first with the comparator. `k` is how many leaders matter (budgeted
    spends its comparisons on them); `budget` caps the comparisons of every method."""
    if method not in METHODS:
        raise ValueError(f"unknown ranking method {method!r} (expected one of {', '.join(METHODS)})")
    if len(set(items)) != len(items):
        raise ValueError("items must be distinct")
    if k < 1:
        raise ValueError("k must be at least 1")
    if budget is not None and budget < 0:
        raise ValueError("budget must be >= 0")
    n = len(items)
    if method == "budgeted" and budget is None:
        budget = default_budget(n, k)
    if method == "budgeted" and budget < minimum_budget(n, k):
        raise ValueError(budget_too_small(n, k, budget))
    asker = _Asker(items, compare, budget)
    if n < 2:
        return asker.finish(list(range(n)), np.zeros(n))
    if method == "all-pairs":
        if budget is not None and budget < n * (n - 1) // 2:
            raise ValueError(f"all-pairs needs {n * (n - 1) // 2} comparisons for {n} items; the budget is {budget}")
        order, scores = all_pairs(asker)
        return asker.finish(order, scores)
    if method == "bubble":
        order, scores = bubble(asker)
    elif method == "quicksort":
        order, scores = quicksort(asker, seed)
    else:
        order, scores = budgeted(asker, k, seed)
    return asker.finish(order, scores)


def budget_too_small(n: int, k: int, budget: int) -> str:
    return (
        f"a budget of {budget} comparisons is too small for budgeted ranking of {n} items with k={k}: "
        f"it needs at least {minimum_budget(n, k)} (all pairs among the {min(k, n)} leaders and about two comparisons per item to find them)"
    )


def both_orders(compare: Comparator) -> Comparator:
    """A comparator that asks each pair in both orders (one batch) and averages, so a preference
    for the first (or second) position cancels: P = (P(a>b) + 1 - P(b>a)) / 2."""

    def symmetric(pairs: list[tuple[Hashable, Hashable]]) -> np.ndarray:
        answers = np.asarray(compare(list(pairs) + [(b, a) for a, b in pairs]), dtype=float)
        forward, backward = answers[: len(pairs)], answers[len(pairs) :]
        return (forward + 1 - backward) / 2

    return symmetric
