"""MarketData (everything loaded, validated once) and MarketView (what is known at one decision).

Strategies receive only views. A view is built by cutting the data at the decision date: bars up
to and including the session, news visible before that session's cutoff. Nothing later is inside
the view object at all, so look-ahead is impossible rather than merely forbidden.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.market.calendar import DEFAULT_CUTOFF, decision_cutoffs
from tradesim.market.news import empty_news, load_news
from tradesim.market.prices import BAR_COLUMNS, TickerBars, load_price_path, load_sample


@dataclass(frozen=True)
class MarketView:
    """Bars and news as known after the close of `date`, before its decision cutoff."""

    date: pd.Timestamp
    cutoff: pd.Timestamp
    bars: dict[str, pd.DataFrame]
    news: pd.DataFrame
    tickers: tuple[str, ...]
    has_ohlc: bool
    cutoffs: pd.DatetimeIndex  # the decision cutoff of each session in the view

    @property
    def sessions(self) -> pd.DatetimeIndex:
        return self.bars["close"].index

    @property
    def close(self) -> pd.DataFrame:
        """Adjusted closes, sessions x tickers, up to and including `date`."""
        return self.bars["close"]

    def field(self, name: str) -> pd.DataFrame:
        return self.bars[name]

    def ticker_bars(self, ticker: str, last: int | None = None) -> pd.DataFrame:
        """One ticker's bars (open, high, low, close, volume, raw_close) up to `date`, without empty
        rows; only the last `last` sessions of the view when given."""
        start = 0 if last is None else max(0, len(self.sessions) - last)
        frame = pd.DataFrame({name: self.bars[name][ticker].iloc[start:] for name in BAR_COLUMNS})
        return frame[frame["close"].notna()]

    def news_for(self, ticker: str, last: int | None = None) -> pd.DataFrame:
        """The ticker's visible news, each item with the `session` it first counts for; only items
        counting for the last `last` sessions when given."""
        items = self.news
        if last is not None and last < len(self.sessions):
            items = items.iloc[int(items["visible_at"].searchsorted(self.cutoffs[-last - 1], side="right")) :]
        items = items[items["ticker"] == ticker]
        first = self.cutoffs.searchsorted(items["visible_at"], side="right")
        return items.assign(session=self.sessions[first])


@dataclass(frozen=True)
class MarketData:
    """Validated bars (field -> sessions x tickers, adjusted) and news for a set of tickers."""

    source: str
    tickers: tuple[str, ...]
    bars: dict[str, pd.DataFrame]
    news: pd.DataFrame
    has_ohlc: bool
    adjusted: bool
    cutoff: str = DEFAULT_CUTOFF
    details: dict[str, TickerBars] = field(default_factory=dict, repr=False)

    @property
    def sessions(self) -> pd.DatetimeIndex:
        return self.bars["close"].index

    @cached_property
    def cutoffs(self) -> pd.DatetimeIndex:
        """The decision cutoff (UTC) of every session."""
        return decision_cutoffs(self.sessions, self.cutoff)

    def view(self, as_of: pd.Timestamp) -> MarketView:
        """What is known after the close of session `as_of`."""
        as_of = pd.Timestamp(as_of)
        end = int(self.sessions.searchsorted(as_of, side="right"))
        if end == 0 or self.sessions[end - 1] != as_of:
            raise ValueError(f"{as_of.date()} is not a session of this data")
        cutoff = self.cutoffs[end - 1]
        visible = int(self.news["visible_at"].searchsorted(cutoff, side="left"))
        return MarketView(
            date=as_of,
            cutoff=cutoff,
            bars={name: frame.iloc[:end] for name, frame in self.bars.items()},
            news=self.news.iloc[:visible],
            tickers=self.tickers,
            has_ohlc=self.has_ohlc,
            cutoffs=self.cutoffs[:end],
        )

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of every bar and news item: two runs on equal inputs share it."""
        digest = hashlib.sha256()
        digest.update(",".join(self.tickers).encode())
        digest.update(self.sessions.asi8.tobytes())
        for name in BAR_COLUMNS:
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(self.bars[name].to_numpy(dtype=float)).tobytes())
        if not self.news.empty:
            digest.update(pd.util.hash_pandas_object(self.news, index=False).to_numpy().tobytes())
        return digest.hexdigest()


def _parse_tickers(tickers) -> tuple[str, ...] | None:
    if tickers is None:
        return None
    return tuple(dict.fromkeys(t.strip().upper() for t in tickers if t.strip()))


def load_bars(source: str, tickers: tuple[str, ...] | None, start=None, end=None) -> dict[str, TickerBars]:
    """Per-ticker validated bars from `sample`, `yahoo` or a path."""
    if source == "sample":
        return load_sample(tickers)
    if source == "yahoo":
        from tradesim.market.yahoo import load_yahoo

        return load_yahoo(
            tickers or (),
            None if start is None else pd.Timestamp(start).date(),
            None if end is None else pd.Timestamp(end).date(),
        )
    return load_price_path(Path(source), tickers)


def load_market_data(
    source: str,
    tickers,
    start=None,
    end=None,
    news: str | None = None,
    cutoff: str = DEFAULT_CUTOFF,
) -> MarketData:
    """Load, validate and cut to [start, end] the bars (and news) of the given tickers."""
    wanted = _parse_tickers(tickers)
    start = None if start is None else pd.Timestamp(start)
    end = None if end is None else pd.Timestamp(end)
    if start is not None and end is not None and start > end:
        raise TradesimError(f"--start {start.date()} is after --end {end.date()}")
    loaded = load_bars(source, wanted, start, end)
    frames: dict[str, pd.DataFrame] = {}
    for ticker, item in loaded.items():
        bars = item.bars.loc[start:end]
        if bars.empty:
            raise TradesimError(
                f"{item.origin}: no bars for {ticker} between {_day(start, 'the start')} and {_day(end, 'the end')} "
                f"(it covers {item.bars.index[0].date()}..{item.bars.index[-1].date()})"
            )
        frames[ticker] = bars
    order = tuple(frames)
    bars = {
        name: pd.concat({t: frames[t][name] for t in order}, axis=1).sort_index() for name in BAR_COLUMNS
    }
    for frame in bars.values():
        frame.columns.name = "ticker"
    news_items = empty_news()
    if news is not None:
        news_items = load_news(Path(news), order)
        last_cutoff = decision_cutoffs(bars["close"].index, cutoff)[-1]
        news_items = news_items[news_items["visible_at"] < last_cutoff].reset_index(drop=True)
    return MarketData(
        source=source,
        tickers=order,
        bars=bars,
        news=news_items,
        has_ohlc=all(item.has_ohlc for item in loaded.values()),
        adjusted=all(item.adjusted for item in loaded.values()),
        cutoff=cutoff,
        details=loaded,
    )


def _day(value, default: str) -> str:
    return default if value is None else str(pd.Timestamp(value).date())
