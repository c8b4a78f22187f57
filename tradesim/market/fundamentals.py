"""Fundamentals from a file: `ticker, period_end, published_at, field, value` (CSV or Parquet).

Each value becomes visible when it was published (the news rules: a date without a time counts
from the end of that New York day). A value published again for the same period and field is a
restatement: views show the old value until the new one is visible, and never the new one before.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.market.news import parse_timestamps
from tradesim.market.prices import parse_dates
from tradesim.market.tables import line_number, match_columns, read_table, table_suffix

ALIASES = {
    "ticker": ("ticker", "symbol"),
    "period_end": ("period_end", "fiscal_period_end", "period"),
    "published_at": ("published_at", "filed_at", "filing_date", "published"),
    "field": ("field", "metric", "item"),
    "value": ("value",),
}
COLUMNS = ["ticker", "period_end", "published_at", "visible_at", "field", "value"]


def empty_fundamentals() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "ticker": pd.Series(dtype="string"),
            "period_end": pd.Series(dtype="datetime64[ns]"),
            "published_at": pd.Series(dtype="datetime64[ns, UTC]"),
            "visible_at": pd.Series(dtype="datetime64[ns, UTC]"),
            "field": pd.Series(dtype="string"),
            "value": pd.Series(dtype=float),
        }
    )


def load_fundamentals(path: Path, tickers: tuple[str, ...]) -> pd.DataFrame:
    """The rows of `tickers`, checked line by line, sorted by the instant each became visible."""
    origin = f"--fundamentals {path}"
    if not path.is_file():
        raise TradesimError(f"{origin}: no such file")
    if table_suffix(path) not in (".csv", ".csv.gz", ".csv.xz", ".parquet", ".pq"):
        raise TradesimError(f"{origin}: expected a .csv or .parquet file")
    table = read_table(path)
    columns = match_columns(table, ALIASES)
    for required in ALIASES:
        if required not in columns:
            raise TradesimError(
                f"{origin}: missing required column {required!r} (expected ticker, period_end, published_at, field, value; "
                f"found: {', '.join(map(str, table.columns))})"
            )
    names = table[columns["ticker"]].astype("string").str.strip().str.upper()
    table = table[names.isin(tickers).to_numpy()]
    names = names[names.isin(tickers)]
    if table.empty:
        return empty_fundamentals()
    positions = table.index.to_numpy()
    period_end = parse_dates(table[columns["period_end"]], origin, positions)
    stamps = parse_timestamps(table[columns["published_at"]], origin)
    published_at, visible_at = stamps.instants, stamps.visible
    fields = table[columns["field"]].astype("string").str.strip()
    values = pd.to_numeric(table[columns["value"]], errors="coerce").to_numpy(dtype=float)
    for row in range(len(table)):
        line = line_number(int(positions[row]))
        if pd.isna(fields.iloc[row]) or not fields.iloc[row]:
            raise TradesimError(f"{origin}, line {line}: empty field name")
        if not np.isfinite(values[row]):
            raise TradesimError(f"{origin}, line {line}: value {table[columns['value']].iloc[row]!r} is not a number")
        if published_at.iloc[row].tz_localize(None).normalize() < period_end[row]:
            raise TradesimError(
                f"{origin}, line {line}: published_at {published_at.iloc[row].date()} is before period_end {period_end[row].date()}"
            )
    frame = pd.DataFrame(
        {
            "ticker": names.to_numpy(),
            "period_end": period_end,
            "published_at": published_at.reset_index(drop=True),
            "visible_at": visible_at.reset_index(drop=True),
            "field": fields.to_numpy(),
            "value": values,
        }
    )
    duplicated = frame.duplicated(["ticker", "period_end", "field", "published_at"]).to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise TradesimError(
            f"{origin}, line {line_number(int(positions[row]))}: a second {frame['field'].iloc[row]} of {frame['ticker'].iloc[row]} "
            f"for the period ending {frame['period_end'].iloc[row].date()} published at the same instant"
        )
    return frame.sort_values(["visible_at", "ticker", "field", "period_end"], ignore_index=True)[COLUMNS]


def latest_values(visible: pd.DataFrame) -> pd.DataFrame:
    """Per (ticker, field): the value of the latest period as last published among `visible` rows,
    with the previous period's value (NaN when none) for the change."""
    if visible.empty:
        return visible.assign(previous_value=pd.Series(dtype=float))
    latest = visible.sort_values("visible_at").drop_duplicates(["ticker", "field", "period_end"], keep="last")
    latest = latest.sort_values(["ticker", "field", "period_end"])
    latest["previous_value"] = latest.groupby(["ticker", "field"])["value"].shift(1)
    return latest.drop_duplicates(["ticker", "field"], keep="last").reset_index(drop=True)
