"""Daily bars from Yahoo Finance (yfinance), cached on disk and refreshed without stitching.

Yahoo restates its history after every split (and its adjusted close after every dividend), so
the cache never keeps Yahoo's adjusted numbers. It keeps, per ticker under
`$TRADESIM_HOME/yahoo/`, the prices as they were printed on each day (Yahoo's split-adjusted
prices multiplied back by the later splits in the same download), the volume likewise, and the
corporate actions (dividends as printed, split ratios); the adjusted close is computed locally
from them on every load. Only sessions that have closed (New York time, the exchange calendar
XNYS) are cached. Each refresh re-fetches a trailing window that overlaps the cache; when an
overlapping bar or action differs from the cache, the whole history of that ticker is fetched
again and the run says so.
"""

from __future__ import annotations

import json
import os
from datetime import date, timedelta

import numpy as np
import pandas as pd

from tradesim.config import tradesim_home
from tradesim.errors import TradesimError
from tradesim.market.prices import TickerBars, bars_from_table

DEFAULT_FIRST_DATE = date(1990, 1, 1)
OVERLAP_SESSIONS = 10  # cached sessions fetched again on every refresh, to catch restatements
PRINTED = ("open", "high", "low", "close", "volume", "dividend", "split")
TOLERANCE = 1e-6  # relative: Yahoo's float noise between two downloads of the same bar


def _now() -> pd.Timestamp:
    """The current instant (UTC). Tests replace this function."""
    return pd.Timestamp.now(tz="UTC")


def last_closed_session(now: pd.Timestamp) -> date:
    """The latest NYSE session whose close is before `now`."""
    import exchange_calendars

    calendar = exchange_calendars.get_calendar("XNYS")
    return calendar.minute_to_past_session(now.floor("min")).date()


def _download(ticker: str, start: date, end: date) -> pd.DataFrame:
    """Ask Yahoo for [start, end) of daily bars with actions, unadjusted for dividends. Tests replace this."""
    import logging
    import warnings

    import yfinance

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            problems.append(record.getMessage())

    problems: list[str] = []
    logger = logging.getLogger("yfinance")
    handler, propagate = Collect(level=logging.ERROR), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # failures are reported once, below, not as yfinance's own lines
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            frame = yfinance.download(
                ticker,
                start=start.isoformat(),
                end=end.isoformat(),
                auto_adjust=False,
                actions=True,
                progress=False,
                multi_level_index=False,
                threads=False,
            )
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    if frame.empty and problems:
        raise RuntimeError(" ".join(problems[-1].split())[:240])
    return frame.reset_index()


def _fetch_printed(ticker: str, start: date, through: date) -> pd.DataFrame:
    """Download [start, through] and turn Yahoo's split-adjusted rows into printed ones.

    Every download runs to the last closed session, so all splits after any row are in it."""
    try:
        frame = _download(ticker, start, through + timedelta(days=1))
    except Exception as exc:  # yfinance raises many kinds; the user needs one line
        raise TradesimError(f"--data yahoo: download of {ticker} {start}..{through} failed: {exc}") from None
    if frame is None or frame.empty:
        return pd.DataFrame(columns=["date", *PRINTED])
    columns = {str(c).lower(): c for c in frame.columns}

    def get(name: str, default: float = np.nan) -> np.ndarray:
        return frame[columns[name]].to_numpy(dtype=float) if name in columns else np.full(len(frame), default)

    dates = pd.to_datetime(frame[columns.get("date", columns.get("datetime"))])
    if getattr(dates.dt, "tz", None) is not None:
        dates = dates.dt.tz_localize(None)
    split = np.nan_to_num(get("stock splits", 0.0), nan=0.0)
    ratio = np.where(split > 0, split, 1.0)
    later = _product_after(ratio)
    printed = pd.DataFrame(
        {
            "date": dates.dt.normalize().to_numpy(),
            "open": get("open") * later,
            "high": get("high") * later,
            "low": get("low") * later,
            "close": get("close") * later,
            "volume": get("volume") / later,
            "dividend": np.nan_to_num(get("dividends", 0.0), nan=0.0) * later,
            "split": ratio,
        }
    )
    printed = printed[printed["date"] <= pd.Timestamp(through)]  # an unfinished session is never kept
    return printed.drop_duplicates("date", keep="last").sort_values("date", ignore_index=True)


def _product_after(values: np.ndarray) -> np.ndarray:
    """For each row, the product of the values in the rows after it (1 for the last)."""
    return np.r_[np.cumprod(values[::-1])[::-1][1:], 1.0]


def adjusted_close(printed: pd.DataFrame) -> np.ndarray:
    """Split- and dividend-adjusted closes computed from printed closes and actions (Yahoo's
    convention: a dividend D scales earlier prices by 1 - D / previous close)."""
    close = printed["close"].to_numpy(dtype=float)
    previous = np.r_[np.nan, close[:-1]]
    dividend_step = np.where(printed["dividend"].to_numpy() > 0, 1.0 / (1.0 - printed["dividend"].to_numpy() / previous), 1.0)
    steps = printed["split"].to_numpy(dtype=float) * np.nan_to_num(dividend_step, nan=1.0)
    return close / _product_after(steps)


def _same(cached: pd.DataFrame, fresh: pd.DataFrame) -> bool:
    if len(cached) != len(fresh) or not (cached["date"].to_numpy() == fresh["date"].to_numpy()).all():
        return False
    a = cached[list(PRINTED)].to_numpy(dtype=float)
    b = fresh[list(PRINTED)].to_numpy(dtype=float)
    return bool(np.allclose(a, b, rtol=TOLERANCE, atol=1e-9, equal_nan=True))


def refresh(ticker: str, want_start: date, want_through: date, closed: date) -> tuple[pd.DataFrame, list[str]]:
    """The cached printed rows of `ticker`, brought up to date when they do not cover the request."""
    cache_dir = tradesim_home() / "yahoo"
    cache_dir.mkdir(parents=True, exist_ok=True)
    table_path, state_path = cache_dir / f"{ticker}.parquet", cache_dir / f"{ticker}.json"
    state = json.loads(state_path.read_text()) if state_path.exists() and table_path.exists() else None
    cached = pd.read_parquet(table_path) if state else None
    notes: list[str] = []
    if state and date.fromisoformat(state["start"]) <= want_start and date.fromisoformat(state["checked_through"]) >= want_through:
        return cached, notes
    if state is None or date.fromisoformat(state["start"]) > want_start or cached.empty:
        start = want_start if state is None else min(want_start, date.fromisoformat(state["start"]))
        table = _fetch_printed(ticker, start, closed)
    else:
        start = date.fromisoformat(state["start"])
        overlap = cached.iloc[-OVERLAP_SESSIONS:]
        fresh = _fetch_printed(ticker, overlap["date"].iloc[0].date(), closed)
        known = fresh[fresh["date"] <= overlap["date"].iloc[-1]]
        if _same(overlap.reset_index(drop=True), known.reset_index(drop=True)):
            table = pd.concat([cached, fresh[fresh["date"] > overlap["date"].iloc[-1]]], ignore_index=True)
        else:
            notes.append(
                f"yahoo: {ticker}'s bars or actions since {overlap['date'].iloc[0].date()} differ from the cache "
                "(a restatement, or an action the cache missed): its whole history was downloaded again"
            )
            table = _fetch_printed(ticker, start, closed)
    table = table.reset_index(drop=True)
    temporary = table_path.with_suffix(".parquet.tmp")
    table.to_parquet(temporary, index=False)
    os.replace(temporary, table_path)
    # Covered: through the last closed session, or through the last bar when Yahoo has none after it
    # yet (a late bar, a halted or delisted ticker), so that a later run asks again.
    through = closed if table.empty else min(closed, table["date"].iloc[-1].date())
    state_path.write_text(json.dumps({"start": start.isoformat(), "checked_through": through.isoformat()}))
    return table, notes


def load_yahoo(tickers: tuple[str, ...], start: date | None, end: date | None) -> dict[str, TickerBars]:
    """Load tickers from the cache, refreshing it where it does not cover [start, end]."""
    if not tickers:
        raise TradesimError("--data yahoo: name the tickers to download (--ticker or --tickers)")
    closed = last_closed_session(_now())
    want_start = start or DEFAULT_FIRST_DATE
    want_through = min(end or closed, closed)
    result = {}
    for ticker in tickers:
        printed, notes = refresh(ticker, want_start, want_through, closed)
        printed = printed[printed["close"].notna()]
        if printed.empty:
            raise TradesimError(f"--data yahoo: Yahoo returned no bars for {ticker} ({want_start}..{want_through}); is the ticker right?")
        table = pd.DataFrame(
            {
                "date": printed["date"],
                "open": printed["open"],
                "high": printed["high"],
                "low": printed["low"],
                "close": printed["close"],
                "adj_close": adjusted_close(printed),
                "volume": printed["volume"],
                "split_coefficient": printed["split"],
            }
        )
        bars = bars_from_table(table, f"yahoo cache {tradesim_home() / 'yahoo' / ticker}.parquet", ticker)[ticker]
        bars.notes.extend(notes)
        result[ticker] = bars
    return result
