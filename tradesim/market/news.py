"""News items from files: one long file or a directory of per-ticker files (JSONL, CSV, Parquet).

Each item ends with an `id`, a `ticker`, its `published_at` instant (UTC) and the `visible_at`
instant (UTC) from which a decision may use it. Timestamps without a zone are taken as UTC;
items with a date and no time become visible at the end of that New York date.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.market.calendar import end_of_day_utc
from tradesim.market.tables import TABLE_SUFFIXES, line_number, match_columns, read_table, stem, table_suffix

NEWS_ALIASES: dict[str, tuple[str, ...]] = {
    "timestamp": ("published_at", "created_at", "timestamp", "datetime", "date"),
    "text": ("headline", "title", "text"),
    "ticker": ("ticker", "symbol"),
    "id": ("id",),
}
NEWS_COLUMNS = ["id", "ticker", "published_at", "visible_at", "text"]


def empty_news() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": pd.Series(dtype="string"),
            "ticker": pd.Series(dtype="string"),
            "published_at": pd.Series(dtype="datetime64[ns, UTC]"),
            "visible_at": pd.Series(dtype="datetime64[ns, UTC]"),
            "text": pd.Series(dtype="string"),
        }
    )


def _timestamps(values: pd.Series, origin: str) -> tuple[pd.Series, pd.Series]:
    """Parse to UTC instants, and say which items carried a date only."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values, utc=True)
        naive = getattr(values.dt, "tz", None) is None
        date_only = pd.Series(naive and bool((values.dt.normalize() == values).all()), index=values.index)
    else:
        text = values.astype("string").str.strip()
        parsed = pd.to_datetime(text, errors="coerce", utc=True, format="mixed")
        date_only = text.str.fullmatch(r"\d{4}-\d{2}-\d{2}").fillna(False).astype(bool)
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise TradesimError(
            f"{origin}, line {line_number(row)}: unparseable timestamp {values.iloc[row]!r} "
            "(expected ISO 8601 like 2015-06-30T14:05:00Z, or a date)"
        )
    return parsed, date_only


def news_from_table(table: pd.DataFrame, origin: str, ticker_from_name: str | None) -> pd.DataFrame:
    columns = match_columns(table, NEWS_ALIASES)
    for required in ("timestamp", "text"):
        if required not in columns:
            raise TradesimError(
                f"{origin}: missing required column {required!r} "
                f"(accepted names: {', '.join(NEWS_ALIASES[required])}; found: {', '.join(map(str, table.columns))})"
            )
    if "ticker" in columns:
        tickers = table[columns["ticker"]].astype("string").str.strip().str.upper()
    elif ticker_from_name is not None:
        tickers = pd.Series(ticker_from_name, index=table.index, dtype="string")
    else:
        raise TradesimError(f"{origin}: no ticker column (add a 'ticker' column or name the file <TICKER>.jsonl)")
    published_at, date_only = _timestamps(table[columns["timestamp"]], origin)
    published_at = published_at.dt.as_unit("ns")
    visible_at = published_at.copy()
    if date_only.any():
        dates = pd.DatetimeIndex(published_at[date_only].dt.tz_localize(None))
        visible_at[date_only] = end_of_day_utc(dates)
    text = table[columns["text"]].astype("string").str.strip()
    if "id" in columns:
        ids = table[columns["id"]].astype("string")
    else:
        ids = pd.Series(
            [
                hashlib.sha256(f"{t}|{p.isoformat()}|{x}".encode()).hexdigest()[:16]
                for t, p, x in zip(tickers, published_at, text.fillna(""))
            ],
            index=table.index,
            dtype="string",
        )
    items = pd.DataFrame(
        {"id": ids, "ticker": tickers, "published_at": published_at, "visible_at": visible_at, "text": text}
    )
    return items[items["text"].notna() & (items["text"] != "")]


def load_news(path: Path, tickers: tuple[str, ...]) -> pd.DataFrame:
    """Load the news for the given tickers, sorted by the instant each item became visible."""
    if not path.exists():
        raise TradesimError(f"--news {path}: no such file or directory")
    if path.is_dir():
        files = {stem(p).upper(): p for p in sorted(path.iterdir()) if p.is_file() and table_suffix(p) in TABLE_SUFFIXES}
        if not files:
            raise TradesimError(f"--news {path}: directory holds no news files ({', '.join(TABLE_SUFFIXES)})")
        frames = [news_from_table(read_table(files[t]), str(files[t]), t) for t in tickers if t in files]
    else:
        frames = [news_from_table(read_table(path), str(path), None)]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_news()
    news = pd.concat(frames, ignore_index=True)
    news = news[news["ticker"].isin(tickers)]
    news = news.drop_duplicates(subset=["ticker", "id"], keep="first")
    return news.sort_values(["visible_at", "ticker", "id"], ignore_index=True)[NEWS_COLUMNS]
