"""LLMoE's 11 daily price features and their 5-session windows; the return a fill can earn.

Every feature of session t uses bars up to t only (rolling means look backwards), so a feature
row is known after the close of t. Ratios within a session use the printed prices; ratios across
sessions use prices adjusted as of the view's date.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tradesim.config import FILL_RULES

MOVING_AVERAGES = (5, 10, 15, 20, 25, 30)
FEATURE_NAMES = (
    "open_to_close",
    "high_to_close",
    "low_to_close",
    "close_change",
    "adj_close_change",
    *(f"ma{n}_deviation" for n in MOVING_AVERAGES),
)
OHLC_FEATURES = ("open_to_close", "high_to_close", "low_to_close")
WINDOW = 5
HISTORY_NEEDED = max(MOVING_AVERAGES) + WINDOW  # sessions of bars behind one complete window


def llmoe_features(bars: pd.DataFrame) -> pd.DataFrame:
    """LLMoE's 11 features per session from one ticker's bars (`MarketView.ticker_bars`).

    open, high and low relative to the close; the raw and the adjusted close-to-close change; the
    deviation of the 5..30-session moving averages of the adjusted close from it. Features a
    close-only source cannot give are 0.
    """
    close = bars["close"].to_numpy(dtype=float)
    raw_close = bars["raw_close"].to_numpy(dtype=float)
    columns: dict[str, np.ndarray] = {}
    for name, column in zip(OHLC_FEATURES, ("raw_open", "raw_high", "raw_low")):
        columns[name] = np.nan_to_num(bars[column].to_numpy(dtype=float) / raw_close - 1, nan=0.0)
    columns["close_change"] = _change(raw_close)
    columns["adj_close_change"] = _change(close)
    for n in MOVING_AVERAGES:
        columns[f"ma{n}_deviation"] = _trailing_mean(close, n) / close - 1
    return pd.DataFrame(columns, index=bars.index)


def _change(values: np.ndarray) -> np.ndarray:
    change = np.full_like(values, np.nan)
    change[1:] = values[1:] / values[:-1] - 1
    return change


def _trailing_mean(values: np.ndarray, n: int) -> np.ndarray:
    """Mean of the last n values (NaN until n are available)."""
    mean = np.full_like(values, np.nan)
    if len(values) >= n:
        mean[n - 1 :] = np.lib.stride_tricks.sliding_window_view(values, n).mean(axis=1)
    return mean


def windows(features: pd.DataFrame, window: int = WINDOW) -> pd.DataFrame:
    """Each session's last `window` feature rows flattened (oldest first); NaN-containing rows dropped."""
    values = features.to_numpy(dtype=float)
    if len(values) < window:
        return pd.DataFrame(columns=[f"{name}_t-{lag}" for lag in range(window - 1, -1, -1) for name in features.columns])
    stacked = np.lib.stride_tricks.sliding_window_view(values, (window, values.shape[1]))[:, 0]
    flat = stacked.reshape(len(stacked), -1)
    columns = [f"{name}_t-{lag}" for lag in range(window - 1, -1, -1) for name in features.columns]
    frame = pd.DataFrame(flat, index=features.index[window - 1 :], columns=columns)
    return frame[np.isfinite(flat).all(axis=1)]


def fill_to_fill_returns(bars: pd.DataFrame, fill: str, horizon: int = 1) -> pd.Series | pd.DataFrame:
    """Per decision session d: the return a position decided after d earns from its fill to the
    fill `horizon` sessions later (adjusted prices). next-open: open of d+1 to open of d+1+h;
    next-close: close of d+1 to close of d+1+h; same-close: close of d to close of d+h. NaN where
    the data ends first. `bars` holds one ticker's fields as columns, or is a dict of
    sessions x tickers frames (then the result is sessions x tickers).

    This is what learned strategies predict, what the oracle router reveals and what prediction
    accuracy and RankIC are measured against: the overnight move before a next-open fill is never earned.
    """
    if fill not in FILL_RULES:
        raise ValueError(f"unknown fill convention {fill!r}")
    field, offset = FILL_RULES[fill]
    prices = bars[field]
    entry = prices.shift(-offset)
    return entry.shift(-horizon) / entry - 1
