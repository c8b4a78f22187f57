"""Point-in-time views at 500 tickers: a weekly decision loop against plain numpy slicing.

    python benchmarks/views.py [--tickers 500] [--sessions 2520] [--news 500000]

Builds a synthetic universe (long Parquet price file, Parquet news file with a ticker column and
some market-wide items), loads it through `load_market_data`, then for every weekly decision date
reads a 5-session window of open/high/low/close/volume for all tickers and the ids and texts of
the news that count for those 5 sessions, ticker by ticker, through:

  baseline  plain numpy slicing of prebuilt arrays (per-ticker sorted visibility times, texts, ids)
  views     `data.view(date)`, `view.window(field, 5)`, `view.news_window(5)`

and prints the time per decision date of each and their ratio (target: views <= 3x baseline).
Both loops must read the same number of news items, which the script checks.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from tradesim.market import load_market_data

FIELDS = ("open", "high", "low", "close", "volume")


def build_files(directory: Path, tickers: int, sessions: int, news: int, seed: int = 0) -> tuple[Path, Path]:
    rng = np.random.default_rng(seed)
    names = [f"T{i:03d}" for i in range(tickers)]
    dates = pd.bdate_range("2010-01-04", periods=sessions)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (sessions, tickers)), axis=0))
    open_ = close * np.exp(rng.normal(0, 0.005, close.shape))
    prices = pd.DataFrame(
        {
            "ticker": np.tile(names, sessions),
            "date": np.repeat(dates.strftime("%Y-%m-%d"), tickers),
            "open": open_.ravel(),
            "high": np.maximum(open_, close).ravel() * 1.01,
            "low": np.minimum(open_, close).ravel() * 0.99,
            "close": close.ravel(),
            "adj_close": close.ravel(),
            "volume": rng.integers(1_000, 1_000_000, close.size),
        }
    )
    prices_path = directory / "prices.parquet"
    prices.to_parquet(prices_path, index=False)
    start, end = dates[0].value, (dates[-1] + pd.Timedelta(days=1)).value
    stamps = pd.to_datetime(np.sort(rng.integers(start, end, news)), utc=True)
    item_tickers = np.array(names + [""])[rng.integers(0, tickers + 1, news)]  # about 1/(N+1) market-wide
    news_frame = pd.DataFrame(
        {"id": [f"n{i}" for i in range(news)], "ticker": item_tickers, "published_at": stamps, "headline": [f"headline {i}" for i in range(news)]}
    )
    news_path = directory / "news.parquet"
    news_frame.to_parquet(news_path, index=False)
    return prices_path, news_path


def baseline_arrays(data):
    """What a hand-written loop would prebuild: fields as arrays, news per ticker sorted by visibility."""
    arrays = {name: data.bars[name].to_numpy() for name in FIELDS}
    news = data.news
    per_ticker = {}
    for ticker, rows in news.groupby(news["ticker"].fillna(""), sort=False).indices.items():
        items = news.iloc[rows].sort_values("visible_at", kind="stable")
        per_ticker[ticker] = (
            items["visible_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64),
            items["id"].to_numpy(dtype=object),
            items["text"].to_numpy(dtype=object),
        )
    return arrays, per_ticker


def run_baseline(data, arrays, per_ticker, dates) -> tuple[float, int]:
    cutoffs = data.cutoffs.asi8
    positions = data.sessions.get_indexer(dates)
    empty = (np.empty(0, np.int64), np.empty(0, object), np.empty(0, object))
    read = 0
    started = time.perf_counter()
    for end in positions + 1:
        window = [arrays[name][end - 5 : end] for name in FIELDS]
        low, high = cutoffs[end - 6], cutoffs[end - 1]
        for ticker in (*data.tickers, ""):
            visible, ids, texts = per_ticker.get(ticker, empty)
            a, b = np.searchsorted(visible, low, "left"), np.searchsorted(visible, high, "left")
            items = (ids[a:b], texts[a:b])
            read += len(items[0])
        assert window[0].shape[0] == 5
    return (time.perf_counter() - started) / len(dates), read


def run_views(data, dates) -> tuple[float, int]:
    read = 0
    started = time.perf_counter()
    for date in dates:
        view = data.view(date)
        window = [view.window(name, 5) for name in FIELDS]
        news = view.news_window(5)
        for ticker in (*data.tickers, None):
            items = (news.ids(ticker), news.texts(ticker))
            read += len(items[0])
        assert window[0].shape[0] == 5
    return (time.perf_counter() - started) / len(dates), read


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tickers", type=int, default=500)
    parser.add_argument("--sessions", type=int, default=2520)
    parser.add_argument("--news", type=int, default=500_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        started = time.perf_counter()
        prices_path, news_path = build_files(Path(directory), args.tickers, args.sessions, args.news)
        built = time.perf_counter()
        data = load_market_data(str(prices_path), None, news=str(news_path))
        _ = data.news_index, data.bars
        loaded = time.perf_counter()
    dates = data.sessions[10::5]
    arrays, per_ticker = baseline_arrays(data)
    print(f"{len(data.tickers)} tickers x {len(data.sessions)} sessions, {len(data.news):,} news items; "
          f"files written in {built - started:.1f} s, loaded and indexed in {loaded - built:.1f} s")
    baseline = min(run_baseline(data, arrays, per_ticker, dates)[0] for _ in range(args.repeat))
    views = min(run_views(data, dates)[0] for _ in range(args.repeat))
    read_baseline, read_views = run_baseline(data, arrays, per_ticker, dates)[1], run_views(data, dates)[1]
    assert read_baseline == read_views, (read_baseline, read_views)
    print(f"{len(dates)} weekly decision dates, a 5-session window of {len(FIELDS)} fields and the news of every ticker "
          f"({read_views / len(dates):,.0f} items a date)")
    print(f"baseline (numpy slicing of prebuilt arrays): {baseline * 1e3:.2f} ms per decision date")
    print(f"views (data.view, window, news_window):      {views * 1e3:.2f} ms per decision date")
    print(f"ratio views / baseline: {views / baseline:.2f}x (target <= 3x)")


if __name__ == "__main__":
    main()
