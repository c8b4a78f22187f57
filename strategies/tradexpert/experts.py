"""TradExpert's four specialist experts: what each knows about a ticker on a decision date.

Every expert reads one point-in-time view, for all tickers at once, and states its facts: a text
(the report, or what a language model turns into one) and, for the Market and Alpha experts,
numbers the fitted General Expert reads directly.

* News: the ticker's headlines over the last sessions, and market-wide items when the data has them.
* Market: the price/volume window in words (the statistics Time-LLM puts in its prompts): trend,
  return, volatility, drawdown, volume change, range, autocorrelation, the last prices as printed.
* Alpha: the factors chosen on the training period (by information coefficient), with values.
* Fundamental: the latest published values of an optional fundamentals file.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tradesim.market.data import CARRIED_BARS, MarketView
from tradesim.market.factors import FACTOR_HISTORY, FACTORS, compute_factors

EXPERTS = ("news", "market", "alpha", "fundamental")
MARKET_NUMBERS = ("return", "trend", "volatility", "drawdown", "volume_change", "range", "autocorrelation")
HEADLINE_CHARS = 160


@dataclass
class Facts:
    """What the experts state on one date: per ticker, a text per expert and the numbers."""

    date: pd.Timestamp
    tickers: list[str]  # tickers priced on the date with enough history to be judged
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # ticker -> expert -> facts
    numbers: pd.DataFrame | None = None  # tickers x numeric features
    news_ids: dict[str, list[str]] = field(default_factory=dict)
    predictions: dict[str, dict[str, dict]] = field(default_factory=dict)  # ticker -> trained expert -> its prediction
    said: dict[str, dict[str, str]] = field(default_factory=dict)  # ticker -> trained expert -> its prediction in words
    vectors: dict[str, np.ndarray] = field(default_factory=dict)  # expert -> the encoder's embeddings of its texts (tickers' order)

    def reports(self, ticker: str) -> dict[str, str]:
        """Each expert's report on the ticker: its facts (or what a model wrote from them), then what a
        trained specialist predicts. (The encoder reads `texts`: the prediction is a number beside it.)"""
        said = self.said.get(ticker, {})
        return {expert: f"{text} {said[expert]}" if expert in said else text for expert, text in self.texts[ticker].items()}


def panel(view: MarketView, last: int | None) -> dict[str, pd.DataFrame]:
    """open, high, low, close (adjusted as of the view's date) and volume over the last sessions (all
    when None), a missing bar carried over from the session before (`CARRIED_BARS`)."""
    return {name: view.field(name, last).ffill(limit=CARRIED_BARS) for name in ("open", "high", "low", "close", "volume")}


def market_statistics(view: MarketView, window: int) -> pd.DataFrame:
    """Per ticker, over its last `window` sessions: the numbers of the Market expert."""
    bars = panel(view, window + 1)
    close = bars["close"]
    returns = close / close.shift(1) - 1
    recent = returns.iloc[1:]
    log_close = np.log(close.iloc[1:])
    x = np.arange(len(log_close), dtype=float)
    x -= x.mean()
    trend = (log_close - log_close.mean()).mul(x, axis=0).sum() / (x**2).sum()
    volume = bars["volume"].iloc[1:]
    volume_known = volume.notna().all()
    statistics = pd.DataFrame(
        {
            "return": close.iloc[-1] / close.iloc[0] - 1,
            "trend": np.expm1(trend),
            "volatility": recent.std(),
            "drawdown": close.iloc[-1] / close.iloc[1:].max() - 1,
            "volume_change": (volume.iloc[-5:].mean() / volume.mean() - 1).where(volume_known, 0.0).replace([np.inf, -np.inf], 0.0).fillna(0.0),
            "volume_known": volume_known.astype(float),
            "range": ((bars["high"] - bars["low"]) / close).iloc[1:].mean(),
            "autocorrelation": lag_one_autocorrelation(recent.to_numpy(dtype=float)),
        },
        index=close.columns,
    )
    complete = close.notna().all() & (volume_known | volume.isna().all() | ~view.has_ohlc)  # a source without volume is no gap
    return statistics[complete]


def lag_one_autocorrelation(returns: np.ndarray) -> np.ndarray:
    """Per column: Pearson correlation of returns with the previous session's (0 where either is constant)."""
    x, y = returns[1:], returns[:-1]
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    scale = np.sqrt((x**2).sum(axis=0) * (y**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(scale > 0, (x * y).sum(axis=0) / np.where(scale > 0, scale, 1.0), 0.0)


def market_text(ticker: str, stats: dict[str, float], printed: dict[str, float], window: int) -> str:
    direction = "up" if stats["trend"] >= 0 else "down"
    return (
        f"{ticker} over the last {window} sessions: return {stats['return']:+.2%}, trend {direction} "
        f"{abs(stats['trend']):.2%} a session, daily volatility {stats['volatility']:.2%}, "
        f"{stats['drawdown']:.2%} from its high, "
        + (f"volume of the last 5 sessions {stats['volume_change']:+.1%} against the window" if stats["volume_known"] else "volume not given")
        + f", average daily range {stats['range']:.2%}, return autocorrelation "
        f"{stats['autocorrelation']:+.2f}. Last session as printed: open {printed['raw_open']:.2f}, "
        f"high {printed['raw_high']:.2f}, low {printed['raw_low']:.2f}, close {printed['raw_close']:.2f}."
    )


def alpha_values(view: MarketView, names: list[str]) -> pd.DataFrame:
    """tickers x chosen factors on the view's date."""
    bars = panel(view, FACTOR_HISTORY)
    factors = compute_factors(bars, names)
    values = pd.DataFrame({name: values.iloc[-1] for name, values in factors.items()}).replace([np.inf, -np.inf], np.nan)
    # A factor a ticker lacks today (zero volume, no volume column) is the day's median, not a reason
    # to leave the ticker out; a ticker without a (carried) close is not priced and stays out.
    return values.fillna(values.median()).where(bars["close"].iloc[-1].notna(), axis=0)


def alpha_text(ticker: str, values: dict[str, float], ics: dict[str, float]) -> str:
    parts = [f"{name} = {value:.4g} (IC {ics[name]:+.3f}; {FACTORS[name][0]})" for name, value in values.items()]
    return f"Alpha factors of {ticker}: " + "; ".join(parts) + "."


def news_texts(view: MarketView, tickers: list[str], sessions: int, max_headlines: int, max_market: int):
    """Per ticker: the report of the News expert and the ids of the items it used."""
    window = view.news_window(sessions)
    market_texts = list(window.texts(None)[-max_market:]) if max_market else []
    market_ids = list(window.ids(None)[-max_market:]) if max_market else []
    texts, ids = {}, {}
    for ticker in tickers:
        headlines = list(window.texts(ticker)[-max_headlines:]) if max_headlines else []
        used = list(window.ids(ticker)[-max_headlines:]) if max_headlines else []
        lines = [" ".join(str(h).split())[:HEADLINE_CHARS] for h in headlines[::-1]]  # newest first
        text = (
            f"News on {ticker} over the last {sessions} sessions: " + " | ".join(lines)
            if lines
            else f"No news on {ticker} over the last {sessions} sessions."
        )
        if market_texts:
            text += " Market news: " + " | ".join(" ".join(str(h).split())[:HEADLINE_CHARS] for h in market_texts[::-1])
        texts[ticker] = text
        ids[ticker] = [str(i) for i in used + market_ids]
    return texts, ids


def fundamental_texts(view: MarketView, tickers: list[str]) -> dict[str, str]:
    by_ticker = dict(tuple(view.fundamentals().groupby("ticker", sort=False)))
    texts = {}
    for ticker in tickers:
        rows = by_ticker.get(ticker)
        if rows is None:
            texts[ticker] = f"No fundamentals published for {ticker}."
            continue
        parts = []
        for row in rows.itertuples():
            change = "" if not np.isfinite(row.previous_value) or row.previous_value == 0 else f", {row.value / row.previous_value - 1:+.1%} on the previous period"
            parts.append(f"{row.field} {row.value:.6g} (period ending {row.period_end.date()}, published {row.published_at.date()}{change})")
        texts[ticker] = f"Fundamentals of {ticker}: " + "; ".join(parts) + "."
    return texts


def gather(
    view: MarketView,
    experts: tuple[str, ...],
    factors: list[str],
    ics: dict[str, float],
    market_window: int,
    news_sessions: int,
    max_headlines: int,
    max_market_news: int,
) -> Facts:
    """Every expert's facts for every ticker judgeable on the view's date."""
    stats = market_statistics(view, market_window)
    priced = [t for t in view.tickers if t in stats.index]
    numbers = stats.loc[priced, list(MARKET_NUMBERS)] if "market" in experts else pd.DataFrame(index=priced)
    alphas = None
    if "alpha" in experts and factors:
        alphas = alpha_values(view, factors).loc[priced]
        priced = [t for t in priced if alphas.loc[t].notna().all()]
        numbers = numbers.join(alphas.add_prefix("alpha_"))
    facts = Facts(date=view.date, tickers=priced, numbers=numbers.loc[priced])
    texts: dict[str, dict[str, str]] = {t: {} for t in priced}
    if "news" in experts:
        news, facts.news_ids = news_texts(view, priced, news_sessions, max_headlines, max_market_news)
        for t in priced:
            texts[t]["news"] = news[t]
    if "market" in experts:
        last = pd.DataFrame({name: view.field(name, 1 + CARRIED_BARS).ffill().iloc[-1] for name in ("raw_open", "raw_high", "raw_low", "raw_close")})
        rows, printed = stats.to_dict("index"), last.to_dict("index")
        for t in priced:
            texts[t]["market"] = market_text(t, rows[t], printed[t], market_window)
    if alphas is not None:
        rows = alphas.to_dict("index")
        for t in priced:
            texts[t]["alpha"] = alpha_text(t, rows[t], ics)
    if "fundamental" in experts:
        for t, text in fundamental_texts(view, priced).items():
            texts[t]["fundamental"] = text
    facts.texts = texts
    return facts
