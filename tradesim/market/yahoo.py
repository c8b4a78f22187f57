"""Daily bars from Yahoo Finance (yfinance), cached on disk so a later run downloads only what is missing.

The cache is one Parquet file per ticker under `$TRADESIM_HOME/yahoo/` (default
`~/.cache/tradesim`) plus a small JSON file recording which calendar range has been asked for, so
that holidays and weekends at the edges are not downloaded again.
"""

from __future__ import annotations

import json
import os
from datetime import date, timedelta

import pandas as pd

from tradesim.config import tradesim_home
from tradesim.errors import TradesimError
from tradesim.market.prices import TickerBars, bars_from_table

DEFAULT_FIRST_DATE = date(1990, 1, 1)


def _download(ticker: str, start: date, end: date) -> pd.DataFrame:
    """Ask Yahoo for [start, end) of raw daily bars with an adjusted close. Tests replace this function."""
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
                actions=False,
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


def _fetch(ticker: str, start: date, end: date) -> pd.DataFrame:
    try:
        frame = _download(ticker, start, end)
    except Exception as exc:  # yfinance raises many kinds; the user needs one line
        raise TradesimError(f"--data yahoo: download of {ticker} {start}..{end} failed: {exc}") from None
    if frame is None or frame.empty:
        return pd.DataFrame()
    frame.columns = [str(c) for c in frame.columns]
    return frame


def load_yahoo(tickers: tuple[str, ...], start: date | None, end: date | None) -> dict[str, TickerBars]:
    """Load tickers from the cache, downloading only the ranges not yet asked for."""
    if not tickers:
        raise TradesimError("--data yahoo: name the tickers to download (--ticker or --tickers)")
    cache_dir = tradesim_home() / "yahoo"
    cache_dir.mkdir(parents=True, exist_ok=True)
    want_start = start or DEFAULT_FIRST_DATE
    want_end = (end or date.today()) + timedelta(days=1)
    result = {}
    for ticker in tickers:
        table_path = cache_dir / f"{ticker}.parquet"
        coverage_path = cache_dir / f"{ticker}.json"
        cached = pd.read_parquet(table_path) if table_path.exists() else pd.DataFrame()
        covered = json.loads(coverage_path.read_text()) if coverage_path.exists() and not cached.empty else None
        pieces = [cached] if not cached.empty else []
        if covered is None:
            missing = [(want_start, want_end)]
        else:
            have_start, have_end = date.fromisoformat(covered["start"]), date.fromisoformat(covered["end"])
            missing = [(a, b) for a, b in ((want_start, have_start), (have_end, want_end)) if a < b]
        for piece_start, piece_end in missing:
            pieces.append(_fetch(ticker, piece_start, piece_end))
        pieces = [p for p in pieces if not p.empty]
        if not pieces:
            raise TradesimError(f"--data yahoo: Yahoo returned no bars for {ticker} ({want_start}..{want_end}); is the ticker right?")
        table = pd.concat(pieces, ignore_index=True)
        date_column = next(c for c in table.columns if c.lower() in ("date", "datetime"))
        table[date_column] = pd.to_datetime(table[date_column]).dt.tz_localize(None).dt.normalize()
        table = table.drop_duplicates(subset=date_column, keep="last").sort_values(date_column, ignore_index=True)
        if missing:
            tmp = table_path.with_suffix(".parquet.tmp")
            table.to_parquet(tmp, index=False)
            os.replace(tmp, table_path)
            span = [want_start, want_end] if covered is None else [
                min(want_start, date.fromisoformat(covered["start"])),
                max(want_end, date.fromisoformat(covered["end"])),
            ]
            coverage_path.write_text(json.dumps({"start": span[0].isoformat(), "end": span[1].isoformat()}))
        result[ticker] = bars_from_table(table, f"yahoo cache {table_path}", ticker)[ticker]
    return result
