"""News items from files: one long file or a directory of per-ticker files (JSONL, CSV, Parquet).

Each item ends with an `id`, a `ticker` (missing for market-wide items), its `published_at`
instant (UTC) and the `visible_at` instant (UTC) from which a decision may use it. Each value is
judged on its own, whatever the file format: a date without a time (or a midnight: naive, UTC, or
in the value's own zone) becomes visible at the end of that New York date; a time without a zone is
UTC; any other zoned time gives the instant.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
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


TIME_PATTERN = r"\d{1,2}:\d{2}"
ZONE_PATTERN = r"(?:[zZ]|[+-]\d{2}(?::?\d{2})?|\s*(?:UTC|GMT|utc|gmt))$"
MIDNIGHT_PATTERN = r"[T ]00:00(?::00(?:\.0*)?)?\s*" + ZONE_PATTERN


@dataclass
class Timestamps:
    """Parsed news timestamps: the UTC instants, the instants from which each may be used, which
    values were dates, which times had no zone, which zoned values sat exactly on a midnight."""

    instants: pd.Series
    visible: pd.Series
    date_only: np.ndarray
    naive_time: np.ndarray
    zoned_midnight: np.ndarray

    def select(self, rows: np.ndarray) -> Timestamps:
        return Timestamps(self.instants[rows], self.visible[rows], self.date_only[rows], self.naive_time[rows], self.zoned_midnight[rows])


def parse_timestamps(values: pd.Series, origin: str) -> Timestamps:
    """Decide per value: no time part, or a naive midnight, is a date; so is a zoned value exactly
    at midnight UTC or at midnight in its own zone (how Parquet writers and vendors store a date);
    a time without a zone is UTC; any other value with a zone is that instant. A date becomes
    visible at the end of that calendar date in New York. The file format does not matter."""
    if pd.api.types.is_datetime64_any_dtype(values):
        aware = getattr(values.dt, "tz", None) is not None
        instants = values.dt.tz_convert("UTC") if aware else values.dt.tz_localize("UTC")
        local_midnight = (values.dt.normalize() == values).to_numpy()
        has_zone = np.full(len(values), aware)
        has_time = has_zone | ~local_midnight
        local_dates = values.dt.tz_localize(None) if aware else values
    else:
        text = values.astype("string").str.strip()
        try:
            instants = pd.to_datetime(text, utc=True, format="ISO8601")
        except (ValueError, TypeError):
            instants = pd.to_datetime(text, utc=True, format="mixed", errors="coerce")
        has_time = text.str.contains(TIME_PATTERN, regex=True).fillna(False).to_numpy(dtype=bool)
        has_zone = has_time & text.str.contains(ZONE_PATTERN, regex=True).fillna(False).to_numpy(dtype=bool)
        local_midnight = has_zone & text.str.contains(MIDNIGHT_PATTERN, regex=True).fillna(False).to_numpy(dtype=bool)
        local_dates = None
    bad = np.flatnonzero(instants.isna().to_numpy())
    if bad.size:
        row = int(bad[0])
        raise TradesimError(
            f"{origin}, line {line_number(int(values.index[row]))}: unparseable timestamp {values.iloc[row]!r} "
            "(expected ISO 8601 like 2015-06-30T14:05:00Z, or a date)"
        )
    instants = instants.dt.as_unit("ns")
    utc_midnight = (instants.dt.normalize() == instants).to_numpy()
    zoned_midnight = has_zone & (utc_midnight | local_midnight)
    date_only = (~has_zone & (~has_time | utc_midnight)) | zoned_midnight
    naive_time = has_time & ~has_zone & ~utc_midnight
    visible = instants.copy()
    if date_only.any():
        dates = instants.dt.tz_localize(None)  # the date as written, for dates, naive and UTC midnights
        in_own_zone = zoned_midnight & local_midnight  # 2014-01-02 00:00:00-05:00 is the date 2014-01-02
        if in_own_zone.any():
            if local_dates is None:
                written = text[in_own_zone].str.replace(ZONE_PATTERN, "", regex=True).str.strip()
                local_dates = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
                local_dates[in_own_zone] = pd.to_datetime(written, format="mixed")
            dates = dates.where(~in_own_zone, local_dates)
        visible[date_only] = end_of_day_utc(pd.DatetimeIndex(dates[date_only]))
    return Timestamps(instants, visible, date_only, naive_time, zoned_midnight)


@dataclass
class News:
    """Loaded news items and what loading found out about them."""

    items: pd.DataFrame
    notes: list[str]


def news_from_table(
    table: pd.DataFrame, origin: str, ticker_from_name: str | None, tickers: tuple[str, ...] | None = None
) -> tuple[pd.DataFrame, Timestamps]:
    """Items of one table; `ticker_from_name` None and no ticker column: market-wide items. With
    `tickers`, only their items and market-wide ones are parsed (line numbers stay the file's)."""
    columns = match_columns(table, NEWS_ALIASES)
    for required in ("timestamp", "text"):
        if required not in columns:
            raise TradesimError(
                f"{origin}: missing required column {required!r} "
                f"(accepted names: {', '.join(NEWS_ALIASES[required])}; found: {', '.join(map(str, table.columns))})"
            )
    if "ticker" in columns:
        names = table[columns["ticker"]].astype("string").str.strip().str.upper().replace("", pd.NA)
    else:
        names = pd.Series(ticker_from_name, index=table.index, dtype="string")
    if tickers is not None and "ticker" in columns:
        wanted = (names.isin(tickers) | names.isna()).to_numpy()
        table, names = table[wanted], names[wanted]
    stamps = parse_timestamps(table[columns["timestamp"]], origin)
    published_at, visible_at = stamps.instants, stamps.visible
    text = table[columns["text"]].astype("string").str.strip()
    if "id" in columns:
        ids = table[columns["id"]].astype("string")
    else:
        ids = pd.Series(
            [
                hashlib.sha256(f"{'' if pd.isna(t) else t}|{p.isoformat()}|{x}".encode()).hexdigest()[:16]
                for t, p, x in zip(names, published_at, text.fillna(""))
            ],
            index=table.index,
            dtype="string",
        )
    items = pd.DataFrame(
        {"id": ids, "ticker": names, "published_at": published_at, "visible_at": visible_at, "text": text}
    )
    kept = (items["text"].notna() & (items["text"] != "")).to_numpy()
    return items[kept], stamps.select(kept)


def load_news(path: Path, tickers: tuple[str, ...]) -> News:
    """Load the news for the given tickers (and market-wide items), sorted by the instant each item
    became visible.

    A directory holds one file per ticker. One file holds a `ticker` column (an empty value is a
    market-wide item), or is one ticker's when named after one of `tickers`, or else is market-wide.
    """
    if not path.exists():
        raise TradesimError(f"--news {path}: no such file or directory")
    if path.is_dir():
        files = {stem(p).upper(): p for p in sorted(path.iterdir()) if p.is_file() and table_suffix(p) in TABLE_SUFFIXES}
        if not files:
            raise TradesimError(f"--news {path}: directory holds no news files ({', '.join(TABLE_SUFFIXES)})")
        parts = [news_from_table(read_table(files[t]), str(files[t]), t) for t in tickers if t in files]
    else:
        name = stem(path).upper()
        parts = [news_from_table(read_table(path), str(path), name if name in tickers else None, tickers)]
    parts = [(items, stamps) for items, stamps in parts if not items.empty]
    if not parts:
        return News(empty_news(), [])
    news = pd.concat([items for items, _ in parts], ignore_index=True)
    date_only = np.concatenate([stamps.date_only for _, stamps in parts])
    naive_time = np.concatenate([stamps.naive_time for _, stamps in parts])
    zoned_midnight = np.concatenate([stamps.zoned_midnight for _, stamps in parts])
    wanted = (news["ticker"].isin(tickers) | news["ticker"].isna()).to_numpy()
    news, date_only, naive_time, zoned_midnight = news[wanted], date_only[wanted], naive_time[wanted], zoned_midnight[wanted]
    notes = []
    if zoned_midnight.any():
        notes.append(
            f"{int(zoned_midnight.sum())} news timestamps sit exactly on a midnight (UTC or their own zone): "
            "read as dates, visible from the end of that New York date"
        )
    if naive_time.any():
        notes.append(f"{int(naive_time.sum())} news timestamps have a time but no zone: read as UTC")
    if date_only.any():
        notes.append(f"{int(date_only.sum())} news items carry a date only: visible from the end of that New York date")
    market_wide = int(news["ticker"].isna().sum())
    if market_wide:
        notes.append(f"{market_wide} news items have no ticker: market-wide, visible to every ticker")
    news = news.drop_duplicates(subset=["ticker", "id"], keep="first")
    return News(news.sort_values(["visible_at", "ticker", "id"], ignore_index=True, na_position="first")[NEWS_COLUMNS], notes)
