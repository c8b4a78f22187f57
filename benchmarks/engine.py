"""Engine overhead: a top-K backtest of 500 tickers x 2,520 sessions.

Runs, in one process and on the same weights:
  1. a direct vectorbt call (orders prepared by hand, `Portfolio.from_orders` + `value()`; vectorbt
     comes with the `dev` or `vectorbt` extra, its numba kernels compiled before timing),
  2. tradesim's engine (`tradesim.engine.simulate`: the session step looped over the sessions that
     fill orders, marks in between vectorised; trades, positions and exposure included),
  3. a naive pandas loop over sessions (the obvious way without a vectorised simulator),
and prints their times and ratios. Target: engine / direct vectorbt <= 0.6.

    python benchmarks/engine.py [--tickers 500] [--sessions 2520] [--top-k 50] [--every 5] [--repeat 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import vectorbt as vbt

from tradesim.engine import simulate
from tradesim.policies import rebalance_dates, top_k


def make_prices(tickers: int, sessions: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    index = pd.bdate_range("2010-01-04", periods=sessions)
    names = [f"T{i:03d}" for i in range(tickers)]
    close = 50 * np.exp(np.cumsum(rng.normal(0.0002, 0.02, (sessions, tickers)), axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0, 0.005, (sessions, tickers)))
    return pd.DataFrame(open_, index=index, columns=names), pd.DataFrame(close, index=index, columns=names)


def momentum_top_k(close: pd.DataFrame, k: int, every: int, lookback: int = 60) -> pd.DataFrame:
    scores = close / close.shift(lookback) - 1
    dates = rebalance_dates(close.index[lookback:], every)
    return pd.DataFrame([top_k(scores.loc[d], k) for d in dates], index=dates)


def direct_vectorbt(weights: pd.DataFrame, open_: pd.DataFrame, close: pd.DataFrame, cost: float) -> pd.Series:
    first = close.index.get_loc(weights.index[0])
    size = np.full(close.shape, np.nan)
    rows = close.index.get_indexer(weights.index) + 1
    keep = rows < len(close)
    size[rows[keep]] = weights.to_numpy()[keep]
    portfolio = vbt.Portfolio.from_orders(
        close=close.iloc[first:],
        size=size[first:],
        size_type="targetpercent",
        price=open_.to_numpy()[first:],
        direction="both",
        fees=cost,
        init_cash=100_000.0,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
        freq="1D",
    )
    return portfolio.value()


def naive_loop(weights: pd.DataFrame, open_: pd.DataFrame, close: pd.DataFrame, cost: float) -> pd.Series:
    """Session by session with pandas objects: value, rebalance to targets (sells first), mark to close."""
    cash, shares = 100_000.0, pd.Series(0.0, index=close.columns)
    sessions = close.index[close.index.get_loc(weights.index[0]):]
    fills = {close.index[close.index.get_loc(d) + 1]: w for d, w in weights.iterrows() if close.index.get_loc(d) + 1 < len(close)}
    equity = {}
    for date in sessions:
        if date in fills:
            price = open_.loc[date]
            value = cash + (shares * price).sum()
            delta = fills[date] * value / price - shares
            for ticker in (fills[date] * value - shares * price).sort_values(kind="stable").index:
                amount = delta[ticker]
                if abs(amount) <= 1e-12:
                    continue
                if amount > 0:
                    spend = amount * price[ticker] * (1 + cost)
                    if spend > cash:
                        amount, spend = cash / (price[ticker] * (1 + cost)), cash
                    cash -= spend
                else:
                    cash += -amount * price[ticker] * (1 - cost)
                shares[ticker] += amount
        equity[date] = cash + (shares * close.loc[date]).sum()
    return pd.Series(equity)


def best_time(function, repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=2520)
    parser.add_argument("--top-k", type=int, default=50)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--cost-bps", type=float, default=5.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    open_, close = make_prices(args.tickers, args.sessions)
    weights = momentum_top_k(close, args.top_k, args.every)
    cost = args.cost_bps / 1e4
    print(f"top-{args.top_k} of {args.tickers} tickers, {args.sessions} sessions, {len(weights)} rebalances")

    direct_vectorbt(weights.iloc[:3], open_.iloc[:200], close.iloc[:200], cost)  # compile vectorbt's numba kernels once
    direct_s, direct = best_time(lambda: direct_vectorbt(weights, open_, close, cost), args.repeat)
    engine_s, ours = best_time(lambda: simulate(weights, close, open_, cost_bps=args.cost_bps), args.repeat)
    loop_s, naive = best_time(lambda: naive_loop(weights, open_, close, cost), 1)

    np.testing.assert_allclose(ours.equity.to_numpy(), direct.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(ours.equity.to_numpy(), naive.to_numpy(), rtol=1e-9)
    print(f"direct vectorbt    {direct_s:8.3f} s")
    print(f"tradesim engine    {engine_s:8.3f} s   ratio to vectorbt {engine_s / direct_s:5.2f} (target <= 0.6)")
    print(f"naive pandas loop  {loop_s:8.3f} s   engine speed-up {loop_s / engine_s:7.1f}x")
    print("all three equity curves agree to 1e-9")


if __name__ == "__main__":
    main()
