"""Trading policies: how a prediction or a score becomes target weights.

* All-in All-out: one ticker, all capital in when a rise is predicted, out (or short) otherwise.
* Top-K: equal weight 1/K on the K best-scored tickers, rebalanced every N sessions.
* The benchmark: equal weight over the tickers priced, bought with the first decision and held,
  re-weighted only when a ticker lists or its data ends (backtests and paper accounts alike).
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def all_in_all_out(rise_predicted: bool, *, short: bool = False) -> float:
    """Weight 1 when a rise is predicted, else 0 (or -1 with `short`)."""
    if rise_predicted:
        return 1.0
    return -1.0 if short else 0.0


def top_k(scores: pd.Series, k: int) -> pd.Series:
    """1/K on the K highest finite scores, 0 elsewhere; ties go to the ticker that sorts first.

    With fewer than K scored tickers, the rest of the capital stays in cash.
    """
    if k < 1:
        raise ValueError("k must be at least 1")
    scored = scores[np.isfinite(scores.to_numpy(dtype=float))].to_dict()
    order = sorted(scored, key=lambda ticker: (-scored[ticker], str(ticker)))
    weights = pd.Series(0.0, index=scores.index)
    weights[order[:k]] = 1.0 / k
    return weights


def rebalance_dates(sessions: pd.DatetimeIndex, every: int) -> pd.DatetimeIndex:
    """Every `every`-th session, starting with the first."""
    if every < 1:
        raise ValueError("every must be at least 1")
    return sessions[::every]


def top_k_dropout(order: list[str], held: set[str], k: int, n_drop: int | None = None) -> list[str]:
    """The K names to hold after a rebalance, given the ranking `order` (best first, only names
    that can be traded) and the names `held` before it (qlib's TopkDropout).

    Without `n_drop`: the top K. With it: held names still ranked are kept unless they have fallen
    out of the top K, and at most `n_drop` of those are replaced per rebalance (worst first) by the
    best-ranked names not held; held names that cannot be traded are always replaced."""
    if k < 1:
        raise ValueError("k must be at least 1")
    top = order[:k]
    if n_drop is None:
        return top
    ranked = {name: position for position, name in enumerate(order)}
    keep = [name for name in held if name in ranked]
    fallen = sorted((name for name in keep if ranked[name] >= k), key=lambda name: -ranked[name])
    for name in fallen[: max(n_drop, 0)]:
        keep.remove(name)
    keep = sorted(keep, key=ranked.get)[:k]
    newcomers = [name for name in order if name not in keep][: k - len(keep)]
    return sorted(keep + newcomers, key=ranked.get)


def benchmark_targets(priced: np.ndarray) -> np.ndarray:
    """The benchmark's target weights over tickers given which are priced (rows of booleans): equal
    weight over the priced ones."""
    rows = np.asarray(priced, dtype=float)
    return rows / np.maximum(rows.sum(axis=-1, keepdims=True), 1)
