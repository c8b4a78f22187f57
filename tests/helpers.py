"""Fixtures the tests build for themselves: synthetic bars and their files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def synthetic_bars(tickers=("AAA", "BBB", "CCC"), sessions=300, seed=0, start="2020-01-02") -> dict[str, pd.DataFrame]:
    """Random-walk OHLCV per ticker, Yahoo-style columns, with an adjusted close below the close."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, periods=sessions)
    frames = {}
    for ticker in tickers:
        close = 50 * np.exp(np.cumsum(rng.normal(0.0003, 0.02, sessions)))
        open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0, 0.01, sessions))
        high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.005, sessions)))
        low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.005, sessions)))
        dividend_factor = np.linspace(0.9, 1.0, sessions)
        frames[ticker] = pd.DataFrame(
            {
                "Date": dates.strftime("%Y-%m-%d"),
                "Open": open_,
                "High": high,
                "Low": low,
                "Close": close,
                "Adj Close": close * dividend_factor,
                "Volume": rng.integers(1_000, 100_000, sessions),
            }
        )
    return frames


def write_ticker_dir(directory: Path, frames: dict[str, pd.DataFrame]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for ticker, frame in frames.items():
        frame.to_csv(directory / f"{ticker}.csv", index=False)
    return directory


def write_long_file(path: Path, frames: dict[str, pd.DataFrame]) -> Path:
    long = pd.concat([frame.assign(ticker=ticker) for ticker, frame in frames.items()], ignore_index=True)
    if path.suffix == ".parquet":
        long.to_parquet(path, index=False)
    else:
        long.to_csv(path, index=False)
    return path


def price_frames(frames: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(open, close) wide frames, unadjusted, straight from the synthetic frames."""
    index = pd.DatetimeIndex(pd.to_datetime(next(iter(frames.values()))["Date"]))
    open_ = pd.DataFrame({t: f["Open"].to_numpy() for t, f in frames.items()}, index=index)
    close = pd.DataFrame({t: f["Close"].to_numpy() for t, f in frames.items()}, index=index)
    return open_, close
