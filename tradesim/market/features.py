"""Daily price features for the learned experts (LLMoE's 11 features) and their 5-session windows.

Every feature of session t uses bars up to t only (rolling means look backwards), so a feature
row is known after the close of t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

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


def price_features(bars: pd.DataFrame) -> pd.DataFrame:
    """The 11 features per session from one ticker's bars (open, high, low, close, raw_close).

    open, high and low relative to the close; the raw and the adjusted close-to-close change; the
    deviation of the 5..30-session moving averages of the adjusted close from it. Features a
    close-only source cannot give are 0.
    """
    close = bars["close"]
    features = pd.DataFrame(index=bars.index)
    for name, column in zip(OHLC_FEATURES, ("open", "high", "low")):
        features[name] = (bars[column] / close - 1).fillna(0.0)
    features["close_change"] = bars["raw_close"].pct_change()
    features["adj_close_change"] = close.pct_change()
    for n in MOVING_AVERAGES:
        features[f"ma{n}_deviation"] = close.rolling(n).mean() / close - 1
    return features


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


def next_session_rise(close: pd.Series) -> pd.Series:
    """1.0 where the adjusted close rises at the next session, 0.0 where not, NaN on the last session."""
    following = close.shift(-1)
    return (following > close).astype(float).where(following.notna())
