"""Changing anything after date d leaves every decision up to d byte-identical."""

import json

import numpy as np
import pandas as pd
import pytest

from helpers import synthetic_bars, write_ticker_dir
from strategies.baselines import Momentum
from tradesim.backtesting import run_backtest
from tradesim.config import resolve
from tradesim.market import load_market_data
from tradesim.market.calendar import decision_cutoffs
from tradesim.strategy import Decision, Strategy

TICKERS = ("AAA", "BBB", "CCC")
SPLIT = pd.Timestamp("2016-03-15")


class NewsAndPrices(Strategy):
    """Reads everything a view offers: every bar field, and news text and timestamps."""

    name = "news-and-prices"
    summary = "test strategy"

    def decide(self, view):
        scores = {}
        log = {}
        for ticker in self.tickers:
            bars = view.ticker_bars(ticker).tail(10)
            news = view.news_for(ticker).tail(5)
            score = float(bars["close"].pct_change().sum() + bars["high"].mean() / bars["low"].mean() + len(news) / 10)
            scores[ticker] = score
            log[ticker] = {
                "score": score,
                "news": [f"{row.id}|{row.visible_at.isoformat()}|{row.text}" for row in news.itertuples()],
                "last_bar": bars.iloc[-1].round(10).tolist(),
            }
        best = max(scores, key=scores.get)
        return Decision({t: float(t == best) for t in self.tickers}, log)


def _news_rows(rng, start, end, prefix, count):
    stamps = pd.to_datetime(rng.uniform(pd.Timestamp(start).value, pd.Timestamp(end).value, count).astype("int64"), utc=True)
    return [
        {"id": f"{prefix}{i}", "ticker": str(rng.choice(TICKERS)), "created_at": s.isoformat(), "text": f"{prefix} headline {i}"}
        for i, s in enumerate(stamps)
    ]


def _write_inputs(directory, frames, news_rows):
    write_ticker_dir(directory / "bars", frames)
    (directory / "news.jsonl").write_text("".join(json.dumps(r) + "\n" for r in news_rows))
    return str(directory / "bars"), str(directory / "news.jsonl")


def _scramble_after(frames, rng, split):
    scrambled = {}
    for ticker, frame in frames.items():
        frame = frame.copy()
        later = pd.to_datetime(frame["Date"]) > split
        n = int(later.sum())
        close = rng.uniform(1, 500, n)
        frame.loc[later, "Open"] = close * rng.uniform(0.9, 1.1, n)
        frame.loc[later, "High"] = np.maximum(close, frame.loc[later, "Open"]) * 1.05
        frame.loc[later, "Low"] = np.minimum(close, frame.loc[later, "Open"]) * 0.95
        frame.loc[later, "Close"] = close
        frame.loc[later, "Adj Close"] = close * rng.uniform(0.5, 1.0, n)
        frame.loc[later, "Volume"] = rng.integers(1, 10**9, n)
        scrambled[ticker] = frame
    return scrambled


@pytest.mark.parametrize("strategy_class,params", [(NewsAndPrices, {}), (Momentum, {"top_k": 2, "lookback": 7})])
def test_decisions_up_to_d_ignore_everything_after_d(tmp_path, strategy_class, params):
    rng = np.random.default_rng(0)
    frames = synthetic_bars(TICKERS, sessions=400, seed=9, start="2015-06-01")
    cutoff = decision_cutoffs(pd.DatetimeIndex([SPLIT]))[0]
    early_news = _news_rows(rng, "2015-05-01", cutoff - pd.Timedelta(seconds=1), "early", 300)
    late_news = _news_rows(rng, cutoff, "2017-01-01", "late", 300)
    # Items dated (no time) on the split day only become visible after it.
    late_news.append({"id": "dated", "ticker": "AAA", "created_at": str(SPLIT.date()), "text": "dated only"})

    original = _write_inputs(tmp_path / "a", frames, early_news + late_news)
    other_late = _news_rows(rng, cutoff, "2017-01-01", "other", 500)
    for row in other_late[:50]:
        row["id"] = f"late{rng.integers(300)}"  # same ids, other text and times
    changed = _write_inputs(tmp_path / "b", _scramble_after(frames, rng, SPLIT), early_news + other_late)

    def decisions(data_path, news_path):
        config = resolve({}, {"strategy": strategy_class.name, "tickers": ",".join(TICKERS), "data": data_path, "news": news_path, "params": params})
        result = run_backtest(config, strategy_class)
        return [json.dumps(row) for row in result.decisions if pd.Timestamp(row["date"]) <= SPLIT]

    before, after = decisions(*original), decisions(*changed)
    assert len(before) > 100 * len(TICKERS)
    assert before == after


def test_view_holds_nothing_after_its_date(tmp_path):
    frames = synthetic_bars(TICKERS, sessions=100, seed=1, start="2016-01-01")
    news_rows = _news_rows(np.random.default_rng(1), "2016-01-01", "2016-06-01", "n", 200)
    bars, news = _write_inputs(tmp_path, frames, news_rows)
    data = load_market_data(bars, TICKERS, news=news)
    for date in data.sessions[::7]:
        view = data.view(date)
        assert view.sessions[-1] == date
        assert all(view.field(name).index.max() == date for name in ("open", "close", "raw_close", "volume"))
        assert (view.news["visible_at"] < view.cutoff).all()
        later = data.news[data.news["visible_at"] >= view.cutoff]
        assert not set(later["id"]) & set(view.news["id"])


def test_a_dividend_after_d_restating_adjusted_closes_changes_no_decision_up_to_d(tmp_path):
    """Adjusted prices in a view are adjusted as of its date: a later dividend, which multiplies
    every earlier adjusted close by one factor in the source, reaches no earlier view."""
    frames = synthetic_bars(TICKERS, sessions=200, seed=5, start="2015-06-01")
    restated = {}
    for ticker, frame in frames.items():
        frame = frame.copy()
        dates = pd.to_datetime(frame["Date"])
        frame.loc[dates < SPLIT + pd.Timedelta(days=7), "Adj Close"] *= 0.97
        restated[ticker] = frame

    def decisions(directory, bar_frames):
        write_ticker_dir(directory, bar_frames)
        config = resolve({}, {"strategy": "news-and-prices", "tickers": ",".join(TICKERS), "data": str(directory)})
        return [json.dumps(row) for row in run_backtest(config, NewsAndPrices).decisions if pd.Timestamp(row["date"]) <= SPLIT]

    before, after = decisions(tmp_path / "a", frames), decisions(tmp_path / "b", restated)
    assert len(before) > 100 * len(TICKERS)
    assert before == after
