"""The engine against a plain numpy implementation of the same convention (see tradesim/engine.py)."""

import numpy as np
import pandas as pd
import pytest

from helpers import price_frames, synthetic_bars
from tradesim.engine import simulate


def reference_equity(weights, close, open_, fill, cost_bps, slippage_bps, capital):
    """Loop over sessions: rebalance to targets at fill prices (sells first, buys capped by cash).

    Orders for a ticker without a fill price are skipped; a ticker whose data ends before the data
    does is sold at its last close, free of costs, before the next session's fills."""
    fees, slip = cost_bps / 1e4, slippage_bps / 1e4
    sessions = close.index
    first = sessions.get_loc(weights.index[0])
    if fill == "same-close" and first > 0:
        first -= 1  # the curve starts at the capital the session before the first fill
    all_closes = close.to_numpy()
    closes = all_closes[first:]
    marks = np.nan_to_num(pd.DataFrame(all_closes).ffill().to_numpy()[first:])  # 0 before a listing
    if fill == "next-open":
        prices = np.where(np.isfinite(open_.to_numpy()), open_.to_numpy(), all_closes)[first:]
    else:
        prices = closes
    offset = 0 if fill == "same-close" else 1
    last_priced = {j: np.flatnonzero(np.isfinite(all_closes[:, j]))[-1] - first for j in range(close.shape[1])}
    targets = {}
    for date, row in weights.iterrows():
        row_index = sessions.get_loc(date) - first + offset
        if row_index < len(closes):
            targets[row_index] = row.reindex(close.columns).fillna(0.0).to_numpy()
    cash, shares = float(capital), np.zeros(close.shape[1])
    equity = []
    for i in range(len(closes)):
        for j, last in last_priced.items():
            if last == i - 1 and i - 1 + first < len(sessions) - 1:  # data ended at the last session
                cash += shares[j] * marks[i - 1, j]
                shares[j] = 0.0
        if i in targets:
            price = prices[i]
            priced = np.isfinite(price)
            value = cash + np.sum(np.where(priced, shares * np.nan_to_num(price), shares * marks[i]))
            wanted = np.where(priced, targets[i] * value / np.where(priced, price, 1.0) - shares, 0.0)
            change = np.where(priced, targets[i] * value - shares * np.nan_to_num(price), 0.0)
            for j in np.argsort(change, kind="stable"):
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
        equity.append(cash + np.nansum(shares * marks[i]))
    return pd.Series(equity, index=sessions[first:])


def random_weights(index, tickers, rng, allow_short):
    rows = []
    for _ in index:
        raw = rng.uniform(-1 if allow_short else 0, 1, len(tickers)) * (rng.uniform() < 0.8)
        long_sum = raw.clip(min=0).sum()
        rows.append(raw / max(long_sum, 1.0) if long_sum > 1 else raw)
    return pd.DataFrame(rows, index=index, columns=list(tickers))


@pytest.mark.parametrize("fill", ["next-open", "next-close", "same-close"])
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
    assert result.equity.iloc[0] == 50_000 or fill == "same-close"  # same-close pays costs on day one


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


def test_orders_without_a_price_are_skipped_and_reported():
    frames = synthetic_bars(tickers=("A", "B"), sessions=60, seed=8)
    open_, close = price_frames(frames)
    close.iloc[:20, 1] = np.nan
    open_.iloc[:20, 1] = np.nan
    weights = pd.DataFrame({"A": 1.0, "B": 0.0}, index=close.index[:30])
    weights.iloc[25:] = 0.5
    result = simulate(weights, close, open_)
    assert np.isfinite(result.equity).all()
    early = simulate(pd.DataFrame({"A": [0.5, 0.5], "B": [0.5, 0.5]}, index=close.index[3:5]), close, open_)
    assert list(early.skipped["ticker"]) == ["B", "B"] and list(early.skipped["date"]) == list(close.index[4:6])
    assert set(early.trades["ticker"]) == {"A"}
    expected = reference_equity(pd.DataFrame({"A": [0.5, 0.5], "B": [0.5, 0.5]}, index=close.index[3:5]), close, open_, "next-open", 0, 0, 100_000)
    np.testing.assert_allclose(early.equity.to_numpy(), expected.to_numpy(), rtol=1e-9)


@pytest.mark.parametrize("fill", ["next-open", "next-close", "same-close"])
def test_top_k_over_listings_and_delistings_matches_the_reference(fill):
    """Tickers list late and delist early; top-2 weights keep pointing at them regardless."""
    frames = synthetic_bars(tickers=("A", "B", "C", "D", "E"), sessions=200, seed=21)
    open_, close = price_frames(frames)
    for column, (listed, ended) in {"B": (40, None), "C": (None, 120), "D": (70, 150)}.items():
        for frame in (open_, close):
            if listed:
                frame.iloc[:listed, frame.columns.get_loc(column)] = np.nan
            if ended:
                frame.iloc[ended + 1 :, frame.columns.get_loc(column)] = np.nan
    rng = np.random.default_rng(4)
    dates = close.index[10:195:5]
    weights = pd.DataFrame(0.0, index=dates, columns=close.columns)
    for date in dates:
        weights.loc[date, rng.choice(close.columns, 2, replace=False)] = 0.5
    result = simulate(weights, close, open_, fill=fill, cost_bps=5, slippage_bps=2, capital=10_000)
    expected = reference_equity(weights, close, open_, fill, 5, 2, 10_000)
    np.testing.assert_allclose(result.equity.to_numpy(), expected.to_numpy(), rtol=1e-9)
    assert result.delisted == {"C": close.index[120], "D": close.index[150]}
    closed = result.trades[result.trades["note"] == "delisted"]
    assert set(closed["ticker"]) <= {"C", "D"} and len(closed) >= 1
    for row in closed.itertuples():
        assert row.date == result.delisted[row.ticker] and row.side == "sell" and row.fees == 0
        assert row.price == close.loc[row.date, row.ticker]
    assert (result.positions.loc[close.index[122]:, "C"] == 0).all()
    assert not result.skipped.empty


def test_same_close_fills_at_the_decision_close():
    index = pd.bdate_range("2021-01-04", periods=4)
    close = pd.DataFrame({"X": [10.0, 11.0, 12.0, 13.0]}, index=index)
    result = simulate(pd.DataFrame({"X": [1.0]}, index=index[:1]), close, None, fill="same-close", capital=1000)
    assert result.trades["price"].tolist() == [10.0] and result.trades["date"].tolist() == [index[0]]
    assert result.equity.iloc[-1] == pytest.approx(1000 / 10.0 * 13.0)
    assert result.unfilled.empty


def test_weights_for_unknown_tickers_or_twice_for_one_date_are_refused():
    open_, close = price_frames(synthetic_bars(("AAA", "BBB"), sessions=20, seed=3))
    weights = pd.DataFrame({"AAA": [1.0, 0.0], "ZZZ": [0.0, 1.0]}, index=close.index[[2, 5]])
    with pytest.raises(ValueError, match="tickers the prices do not have: ZZZ"):
        simulate(weights, close, open_)
    twice = pd.DataFrame({"AAA": [1.0, 0.0]}, index=close.index[[2, 2]])
    with pytest.raises(ValueError, match="more than one row for decision date"):
        simulate(twice, close, open_)


def test_an_empty_open_fills_at_the_close_and_says_so():
    open_, close = price_frames(synthetic_bars(("AAA",), sessions=20, seed=3))
    open_.iloc[3, 0] = np.nan
    weights = pd.DataFrame({"AAA": [1.0]}, index=close.index[[2]])
    result = simulate(weights, close, open_)
    assert result.trades["price"].iloc[0] == close.iloc[3, 0] and result.trades["note"].iloc[0] == "no open: filled at close"
    assert list(result.filled_at_close["date"]) == [close.index[3]]


@pytest.mark.parametrize("fill,seed", [("next-open", 0), ("next-close", 1), ("same-close", 2)])
def test_the_engine_equals_vectorbt_on_random_weights_costs_listings_and_delistings(fill, seed):
    """vectorbt is the independent oracle: its Portfolio over the same schedule gives the same
    equity, positions and fills to 1e-9."""
    pytest.importorskip("vectorbt")
    from tradesim.vectorbt_export import to_vectorbt

    rng = np.random.default_rng(seed)
    frames = synthetic_bars(("AAA", "BBB", "CCC", "DDD", "EEE"), sessions=160, seed=seed + 3)
    open_, close = price_frames(frames)
    open_.iloc[:30, 1] = close.iloc[:30, 1] = np.nan  # BBB lists late
    open_.iloc[110:, 2] = close.iloc[110:, 2] = np.nan  # CCC's data ends: delisted
    open_.iloc[70:74, 3] = close.iloc[70:74, 3] = np.nan  # DDD is halted for four sessions
    open_.iloc[rng.choice(160, 5, replace=False), 4] = np.nan  # EEE has empty opens
    dates = close.index[sorted(rng.choice(np.arange(5, 155), 40, replace=False))]
    raw = rng.uniform(-0.6, 1.0, (len(dates), 5))
    weights = pd.DataFrame(raw / np.maximum(1.0, np.abs(raw).sum(axis=1, keepdims=True)), index=dates, columns=close.columns)
    costs = dict(fill=fill, cost_bps=7.0, slippage_bps=3.0, capital=250_000.0, start=dates[0])
    ours = simulate(weights, close, open_, **costs)
    oracle = to_vectorbt(weights, close, open_, **costs)
    np.testing.assert_allclose(ours.equity.to_numpy(), oracle.value().to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(ours.positions.to_numpy(), oracle.assets().to_numpy(), rtol=1e-9, atol=1e-9)
    orders = oracle.orders.values
    assert len(ours.trades) == len(orders) and ours.delisted == {"CCC": close.index[109]}
    np.testing.assert_allclose(np.sort(ours.trades["fees"].to_numpy()), np.sort(orders["fees"]), rtol=1e-9, atol=1e-9)


def test_to_vectorbt_is_a_run_as_a_vectorbt_portfolio(tmp_path):
    pytest.importorskip("vectorbt")
    import tradesim
    from helpers import write_ticker_dir

    bars = write_ticker_dir(tmp_path / "bars", synthetic_bars(("AAA", "BBB", "CCC"), sessions=120, seed=5))
    run = tradesim.backtest("momentum", "AAA,BBB,CCC", lookback=10, top_k=1, cost_bps=5, slippage_bps=2, data=str(bars), progress=False)
    np.testing.assert_allclose(run.to_vectorbt().value().to_numpy(), run.equity["strategy"].to_numpy(), rtol=1e-9)
