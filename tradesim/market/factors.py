"""Classic price/volume factors in the spirit of qlib's Alpha158, for every ticker at once.

Each factor is a function of sessions x tickers arrays (prices adjusted as of one date, volume as
given) that returns a sessions x tickers array whose row t uses rows up to t only. Every factor is
a ratio, a correlation or a rank-free statistic, so it does not depend on the date prices are
adjusted as of. `FACTOR_HISTORY` sessions of history make every factor defined.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

FACTOR_HISTORY = 61  # the longest window (60 sessions of returns) plus the session itself

Panel = dict[str, pd.DataFrame]


def _returns(panel: Panel) -> pd.DataFrame:
    return panel["close"] / panel["close"].shift(1) - 1


def _trend(close: pd.DataFrame, window: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Slope (per session, relative to the last close) and R^2 of a straight line through the closes."""
    x = np.arange(window, dtype=float)
    x_centered = x - x.mean()
    denominator = (x_centered**2).sum()
    values = close.to_numpy(dtype=float)
    slope = np.full(values.shape, np.nan)
    rsquare = np.full(values.shape, np.nan)
    if len(values) >= window:
        stacked = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # T-w+1 x N x w
        centered = stacked - stacked.mean(axis=-1, keepdims=True)
        beta = (centered * x_centered).sum(axis=-1) / denominator
        total = (centered**2).sum(axis=-1)
        with np.errstate(invalid="ignore", divide="ignore"):
            slope[window - 1 :] = beta / values[window - 1 :]
            rsquare[window - 1 :] = np.where(total > 0, beta**2 * denominator / total, np.nan)
    return pd.DataFrame(slope, index=close.index, columns=close.columns), pd.DataFrame(rsquare, index=close.index, columns=close.columns)


def _rolling_corr(a: pd.DataFrame, b: pd.DataFrame, window: int) -> pd.DataFrame:
    return a.rolling(window).corr(b)


def _sump(panel: Panel, window: int) -> pd.DataFrame:
    change = panel["close"].diff()
    return change.clip(lower=0).rolling(window).sum() / change.abs().rolling(window).sum()


FACTORS: dict[str, tuple[str, Callable[[Panel], pd.DataFrame]]] = {
    "ROC5": ("return over the last 5 sessions (short-term momentum)", lambda p: p["close"] / p["close"].shift(5) - 1),
    "ROC10": ("return over the last 10 sessions", lambda p: p["close"] / p["close"].shift(10) - 1),
    "ROC20": ("return over the last 20 sessions (one-month momentum)", lambda p: p["close"] / p["close"].shift(20) - 1),
    "ROC60": ("return over the last 60 sessions (three-month momentum)", lambda p: p["close"] / p["close"].shift(60) - 1),
    "RET1": ("return of the last session (one-day reversal when negative IC)", lambda p: _returns(p)),
    "MA5": ("5-session mean close over the close (above 1: price below its average)", lambda p: p["close"].rolling(5).mean() / p["close"]),
    "MA20": ("20-session mean close over the close", lambda p: p["close"].rolling(20).mean() / p["close"]),
    "MA60": ("60-session mean close over the close", lambda p: p["close"].rolling(60).mean() / p["close"]),
    "STD5": ("volatility: standard deviation of daily returns over 5 sessions", lambda p: _returns(p).rolling(5).std()),
    "STD20": ("volatility: standard deviation of daily returns over 20 sessions", lambda p: _returns(p).rolling(20).std()),
    "STD60": ("volatility: standard deviation of daily returns over 60 sessions", lambda p: _returns(p).rolling(60).std()),
    "MAX20": ("highest high of 20 sessions over the close (distance below the recent high)", lambda p: p["high"].rolling(20).max() / p["close"]),
    "MIN20": ("lowest low of 20 sessions over the close (distance above the recent low)", lambda p: p["low"].rolling(20).min() / p["close"]),
    "RSV10": ("where the close sits in its 10-session high-low range (0 low, 1 high)", lambda p: (p["close"] - p["low"].rolling(10).min()) / (p["high"].rolling(10).max() - p["low"].rolling(10).min())),
    "RSV20": ("where the close sits in its 20-session high-low range", lambda p: (p["close"] - p["low"].rolling(20).min()) / (p["high"].rolling(20).max() - p["low"].rolling(20).min())),
    "SUMP14": ("share of up-moves in the absolute moves of 14 sessions (an RSI)", lambda p: _sump(p, 14)),
    "SUMP20": ("share of up-moves in the absolute moves of 20 sessions", lambda p: _sump(p, 20)),
    "DD60": ("drawdown: the close against its 60-session highest close", lambda p: p["close"] / p["close"].rolling(60).max() - 1),
    "BETA20": ("slope of the 20-session price trend, per session, relative to the close", lambda p: _trend(p["close"], 20)[0]),
    "RSQR20": ("how straight the 20-session trend is (R^2 of a line through the closes)", lambda p: _trend(p["close"], 20)[1]),
    "BETA60": ("slope of the 60-session price trend, per session, relative to the close", lambda p: _trend(p["close"], 60)[0]),
    "KMID": ("the last session's body: close over open minus 1", lambda p: p["close"] / p["open"] - 1),
    "KLEN": ("the last session's range: (high - low) / open", lambda p: (p["high"] - p["low"]) / p["open"]),
    "KUP": ("the last session's upper shadow: (high - max(open, close)) / open", lambda p: (p["high"] - np.maximum(p["open"], p["close"])) / p["open"]),
    "KLOW": ("the last session's lower shadow: (min(open, close) - low) / open", lambda p: (np.minimum(p["open"], p["close"]) - p["low"]) / p["open"]),
    "RANGE20": ("mean daily range (high - low) / close over 20 sessions", lambda p: ((p["high"] - p["low"]) / p["close"]).rolling(20).mean()),
    "VMA5": ("5-session mean volume over the last volume (below 1: volume rising)", lambda p: p["volume"].rolling(5).mean() / p["volume"]),
    "VMA20": ("20-session mean volume over the last volume", lambda p: p["volume"].rolling(20).mean() / p["volume"]),
    "VSTD20": ("volume variability: 20-session standard deviation of volume over its mean", lambda p: p["volume"].rolling(20).std() / p["volume"].rolling(20).mean()),
    "CORR20": ("correlation of the close with log volume over 20 sessions", lambda p: _rolling_corr(p["close"], np.log1p(p["volume"]), 20)),
    "CORD20": ("correlation of daily returns with daily volume changes over 20 sessions", lambda p: _rolling_corr(_returns(p), np.log1p(p["volume"]).diff(), 20)),
    "AMIHUD20": ("illiquidity: mean |return| per dollar traded over 20 sessions (log)", lambda p: np.log((_returns(p).abs() / (p["close"] * p["volume"]).replace(0, np.nan)).rolling(20).mean() + 1e-15)),
}


def compute_factors(panel: Panel, names=None) -> dict[str, pd.DataFrame]:
    """Factors (all, or `names`) over a panel of `open, high, low, close, volume` (sessions x
    tickers DataFrames); infinities become NaN."""
    result = {}
    for name in names or FACTORS:
        with np.errstate(invalid="ignore", divide="ignore"):
            values = FACTORS[name][1](panel)
        result[name] = values.replace([np.inf, -np.inf], np.nan)
    return result


def information_coefficients(factors: dict[str, pd.DataFrame], forward: pd.DataFrame, min_tickers: int = 3) -> pd.DataFrame:
    """Per factor: mean and standard deviation of the rank correlation with forward returns.

    With at least `min_tickers` tickers scored on a date this is the cross-sectional IC of each
    date, averaged; with fewer it is one rank correlation over every (date, ticker) pooled."""
    rows = {}
    for name, values in factors.items():
        aligned = values.reindex(index=forward.index, columns=forward.columns)
        usable = aligned.notna() & forward.notna()
        if forward.shape[1] >= min_tickers:
            a = aligned.where(usable).rank(axis=1)
            b = forward.where(usable).rank(axis=1)
            daily = a.corrwith(b, axis=1, method="pearson")[usable.sum(axis=1) >= min_tickers].dropna()
            rows[name] = {"ic_mean": daily.mean(), "ic_std": daily.std(), "dates": int(len(daily))}
        else:
            x, y = aligned.to_numpy()[usable.to_numpy()], forward.to_numpy()[usable.to_numpy()]
            pooled = pd.Series(x).corr(pd.Series(y), method="spearman") if len(x) > 2 else np.nan
            rows[name] = {"ic_mean": pooled, "ic_std": np.nan, "dates": int(usable.any(axis=1).sum())}
    return pd.DataFrame.from_dict(rows, orient="index")


def select_factors(ics: pd.DataFrame, count: int) -> list[str]:
    """The `count` factors with the largest absolute mean IC (ties: the order of FACTORS)."""
    usable = ics["ic_mean"].dropna()
    order = sorted(usable.index, key=lambda name: (-abs(usable[name]), list(FACTORS).index(name)))
    return order[:count]
