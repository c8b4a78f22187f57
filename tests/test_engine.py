"""The engine against a plain numpy implementation of the same convention (see tradesim/engine.py)."""

import numpy as np
import pandas as pd
import pytest

from helpers import price_frames, synthetic_bars
from tradesim.engine import simulate


def reference_equity(weights, close, open_, fill, cost_bps, slippage_bps, capital):
    """Loop over sessions: rebalance to targets at fill prices (sells first, buys capped by cash)."""
    fees, slip = cost_bps / 1e4, slippage_bps / 1e4
    sessions = close.index
    first = sessions.get_loc(weights.index[0])
    closes = close.to_numpy()[first:]
    prices = (open_ if fill == "next-open" else close).to_numpy()[first:]
    targets = {}
    for date, row in weights.iterrows():
        row_index = sessions.get_loc(date) - first + 1
        if row_index < len(closes):
            targets[row_index] = row.reindex(close.columns).fillna(0.0).to_numpy()
    cash, shares = float(capital), np.zeros(close.shape[1])
    equity = []
    for i in range(len(closes)):
        if i in targets:
            price = prices[i]
            value = cash + np.sum(shares * price)
            wanted = targets[i] * value / price - shares
            for j in np.argsort(targets[i] * value - shares * price, kind="stable"):
                delta = wanted[j]
                if abs(delta) <= 1e-12:
                    continue
                if delta > 0:
                    paid = price[j] * (1 + slip)
                    cost = delta * paid * (1 + fees)
                    if cost > cash:
                        delta, cost = cash / (paid * (1 + fees)), cash
                    cash -= cost
                else:
                    cash += -delta * price[j] * (1 - slip) * (1 - fees)
                shares[j] += delta
        equity.append(cash + np.sum(shares * closes[i]))
    return pd.Series(equity, index=sessions[first:])


def random_weights(index, tickers, rng, allow_short):
    rows = []
    for _ in index:
        raw = rng.uniform(-1 if allow_short else 0, 1, len(tickers)) * (rng.uniform() < 0.8)
        long_sum = raw.clip(min=0).sum()
        rows.append(raw / max(long_sum, 1.0) if long_sum > 1 else raw)
    return pd.DataFrame(rows, index=index, columns=list(tickers))


@pytest.mark.parametrize("fill", ["next-open", "next-close"])
@pytest.mark.parametrize("cost_bps,slippage_bps", [(0, 0), (10, 0), (7.5, 4)])
@pytest.mark.parametrize("allow_short", [False, True])
def test_engine_matches_numpy_reference(fill, cost_bps, slippage_bps, allow_short):
    frames = synthetic_bars(tickers=("A", "B", "C", "D"), sessions=260, seed=3)
    open_, close = price_frames(frames)
    rng = np.random.default_rng(11)
    decision_dates = close.index[5:250:3]
    weights = random_weights(decision_dates, close.columns, rng, allow_short)
    result = simulate(weights, close, open_, fill=fill, cost_bps=cost_bps, slippage_bps=slippage_bps, capital=50_000)
    expected = reference_equity(weights, close, open_, fill, cost_bps, slippage_bps, 50_000)
    assert result.equity.index.equals(expected.index)
    np.testing.assert_allclose(result.equity.to_numpy(), expected.to_numpy(), rtol=1e-9)
    assert result.equity.iloc[0] == 50_000


def test_all_in_all_out_single_ticker_matches_reference_and_counts_trades():
    frames = synthetic_bars(tickers=("MSFT",), sessions=120, seed=5)
    open_, close = price_frames(frames)
    signal = (np.random.default_rng(2).uniform(size=120) > 0.5).astype(float)
    weights = pd.DataFrame({"MSFT": signal}, index=close.index)
    result = simulate(weights, close, open_, fill="next-open", cost_bps=5)
    expected = reference_equity(weights, close, open_, "next-open", 5, 0, 100_000)
    np.testing.assert_allclose(result.equity.to_numpy(), expected.to_numpy(), rtol=1e-9)
    changes = int(np.abs(np.diff(np.r_[0.0, signal[:-1]])).sum())  # the last decision has no next session
    assert len(result.trades) == changes
    assert list(result.unfilled) == [close.index[-1]]


def test_fill_happens_at_next_session_price():
    index = pd.bdate_range("2021-01-04", periods=4)
    close = pd.DataFrame({"X": [10.0, 11.0, 12.0, 13.0]}, index=index)
    open_ = pd.DataFrame({"X": [9.5, 10.5, 11.5, 12.5]}, index=index)
    weights = pd.DataFrame({"X": [1.0]}, index=index[:1])
    at_open = simulate(weights, close, open_, fill="next-open", capital=1000)
    at_close = simulate(weights, close, open_, fill="next-close", capital=1000)
    assert at_open.trades["price"].tolist() == [10.5]
    assert at_close.trades["price"].tolist() == [11.0]
    assert at_open.equity.iloc[-1] == pytest.approx(1000 / 10.5 * 13.0)
    assert at_close.equity.iloc[-1] == pytest.approx(1000 / 11.0 * 13.0)


def test_costs_are_charged_on_traded_value():
    index = pd.bdate_range("2021-01-04", periods=3)
    close = pd.DataFrame({"X": [10.0, 10.0, 10.0]}, index=index)
    weights = pd.DataFrame({"X": [1.0, 0.0]}, index=index[:2])
    result = simulate(weights, close, None, fill="next-close", cost_bps=100, capital=1000)
    bought = 1000 / 1.01 / 10
    assert result.trades["shares"].iloc[0] == pytest.approx(bought)
    assert result.equity.iloc[-1] == pytest.approx(bought * 10 * 0.99)


def test_ticker_without_price_yet_can_be_held_at_zero_weight():
    frames = synthetic_bars(tickers=("A", "B"), sessions=60, seed=8)
    open_, close = price_frames(frames)
    close.iloc[:20, 1] = np.nan
    open_.iloc[:20, 1] = np.nan
    weights = pd.DataFrame({"A": 1.0, "B": 0.0}, index=close.index[:30])
    weights.iloc[25:] = 0.5
    result = simulate(weights, close, open_)
    assert np.isfinite(result.equity).all()
    with pytest.raises(ValueError, match="no price"):
        simulate(pd.DataFrame({"A": [0.5], "B": [0.5]}, index=close.index[3:4]), close, open_)
