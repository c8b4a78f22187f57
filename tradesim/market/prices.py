"""Daily bars from files, the embedded sample, or any table: parsed, validated once, adjusted.

Every source ends as one frame per ticker, indexed by session date, with the columns
`open, high, low, close, volume` (adjusted when the source has an adjusted close: OHLC scaled by
adj_close/close) and `raw_close` (the close as the source printed it). Close-only sources leave
open/high/low empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.market.tables import TABLE_SUFFIXES, line_number, match_columns, read_table, stem, table_suffix

PRICE_ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("date", "timestamp", "datetime", "time", "day"),
    "ticker": ("ticker", "symbol"),
    "open": ("open",),
    "high": ("high",),
    "low": ("low",),
    "close": ("close",),
    "adj_close": ("adj close", "adj_close", "adjusted_close", "adjusted close", "adjclose"),
    "volume": ("volume",),
    "split_coefficient": ("split_coefficient", "split coefficient", "stock splits", "splits"),
}
PRICE_FIELDS = ("open", "high", "low", "close", "adj_close")
BAR_COLUMNS = ("open", "high", "low", "close", "volume", "raw_close")


@dataclass
class TickerBars:
    """One ticker's validated bars and what loading found out about them."""

    ticker: str
    bars: pd.DataFrame
    origin: str
    adjusted: bool
    has_ohlc: bool
    null_rows: int = 0
    adjustment_dates: list[pd.Timestamp] = field(default_factory=list)


def parse_dates(values: pd.Series, origin: str, positions: np.ndarray) -> pd.DatetimeIndex:
    """Parse a date column into naive session dates, naming the first bad line."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values)
    else:
        parsed = pd.to_datetime(values.astype("string").str.strip(), errors="coerce", format="mixed")
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        row = bad[0]
        raise TradesimError(
            f"{origin}, line {line_number(positions[row])}: unparseable date {values.iloc[row]!r} "
            "(expected a date like 2015-06-30)"
        )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_localize(None)
    return pd.DatetimeIndex(parsed.dt.normalize())


def _numeric(values: pd.Series, name: str, origin: str, positions: np.ndarray) -> np.ndarray:
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    text_present = values.notna().to_numpy()
    bad = np.flatnonzero(np.isnan(numbers) & text_present)
    if bad.size:
        row = bad[0]
        raise TradesimError(
            f"{origin}, line {line_number(positions[row])}: {name} is {values.iloc[row]!r}, expected a number"
        )
    return numbers


def validate_bars(table: pd.DataFrame, columns: dict[str, str], ticker: str, origin: str, positions: np.ndarray) -> TickerBars:
    """Turn one ticker's rows (in file order) into validated, adjusted bars.

    Rejects, naming the line: unparseable dates, unsorted or duplicate dates, missing or
    non-positive prices, high < low. Rows whose every price is empty (Yahoo's `null` rows) are
    dropped and counted.
    """
    values = {
        name: _numeric(table[columns[name]], name, origin, positions)
        for name in (*PRICE_FIELDS, "volume", "split_coefficient")
        if name in columns
    }
    price_names = [name for name in PRICE_FIELDS if name in values]
    all_empty = np.all([np.isnan(values[name]) for name in price_names], axis=0)
    keep = ~all_empty
    null_rows = int(all_empty.sum())
    table, positions = table[keep], positions[keep]
    values = {name: array[keep] for name, array in values.items()}

    dates = parse_dates(table[columns["date"]], origin, positions)
    steps = np.diff(dates.asi8)
    if steps.size and (steps <= 0).any():
        row = int(np.flatnonzero(steps <= 0)[0]) + 1
        problem = "duplicate" if steps[row - 1] == 0 else "unsorted"
        raise TradesimError(
            f"{origin}, line {line_number(positions[row])}: {problem} date {dates[row].date()} for {ticker} "
            f"(after {dates[row - 1].date()}; dates must be strictly increasing)"
        )
    for name in price_names:
        missing = np.isnan(values[name])
        if name in ("close", "adj_close") and missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise TradesimError(f"{origin}, line {line_number(positions[row])}: {name} is empty for {ticker}")
        non_positive = values[name] <= 0
        if non_positive.any():
            row = int(np.flatnonzero(non_positive)[0])
            raise TradesimError(
                f"{origin}, line {line_number(positions[row])}: {name} is {values[name][row]:g} for {ticker}, "
                "expected a positive price"
            )
    if "high" in values and "low" in values:
        inverted = values["high"] < values["low"]
        if inverted.any():
            row = int(np.flatnonzero(inverted)[0])
            raise TradesimError(
                f"{origin}, line {line_number(positions[row])}: high {values['high'][row]:g} is below "
                f"low {values['low'][row]:g} for {ticker}"
            )

    raw_close = values["close"]
    adjusted = "adj_close" in values
    factor = values["adj_close"] / raw_close if adjusted else np.ones_like(raw_close)
    has_ohlc = all(name in values for name in ("open", "high", "low"))
    empty = np.full_like(raw_close, np.nan)
    bars = pd.DataFrame(
        {
            "open": values["open"] * factor if has_ohlc else empty,
            "high": values["high"] * factor if has_ohlc else empty,
            "low": values["low"] * factor if has_ohlc else empty,
            "close": raw_close * factor,
            "volume": values.get("volume", empty),
            "raw_close": raw_close,
        },
        index=pd.DatetimeIndex(dates, name="date"),
    )
    return TickerBars(
        ticker=ticker,
        bars=bars,
        origin=origin,
        adjusted=adjusted,
        has_ohlc=has_ohlc,
        null_rows=null_rows,
        adjustment_dates=_adjustment_dates(bars.index, factor, values.get("split_coefficient")),
    )


def _adjustment_dates(dates: pd.DatetimeIndex, factor: np.ndarray, split_coefficient: np.ndarray | None) -> list[pd.Timestamp]:
    """Dates of splits: from a split column when present, else jumps of more than 20% in the adjustment factor."""
    if split_coefficient is not None:
        marked = np.flatnonzero(np.abs(np.nan_to_num(split_coefficient, nan=1.0) - 1.0) > 1e-3)
        return [dates[i] for i in marked]
    if factor.size < 2:
        return []
    ratio = factor[1:] / factor[:-1]
    return [dates[i + 1] for i in np.flatnonzero(np.abs(np.log(ratio)) > np.log(1.2))]


def bars_from_table(table: pd.DataFrame, origin: str, ticker_from_name: str | None) -> dict[str, TickerBars]:
    """Split a table (long, with a ticker column, or one ticker's) into validated bars per ticker."""
    columns = match_columns(table, PRICE_ALIASES)
    missing = [name for name in ("date", "close") if name not in columns]
    if missing:
        raise TradesimError(
            f"{origin}: missing required column {missing[0]!r} "
            f"(accepted names: {', '.join(PRICE_ALIASES[missing[0]])}; found: {', '.join(map(str, table.columns))})"
        )
    positions = np.arange(len(table))
    if "ticker" not in columns:
        if ticker_from_name is None:
            raise TradesimError(f"{origin}: no ticker column (add a 'ticker' column or name the file <TICKER>.csv)")
        return {ticker_from_name: validate_bars(table, columns, ticker_from_name, origin, positions)}
    tickers = table[columns["ticker"]].astype("string").str.strip().str.upper()
    if tickers.isna().any():
        row = int(np.flatnonzero(tickers.isna().to_numpy())[0])
        raise TradesimError(f"{origin}, line {line_number(row)}: ticker is empty")
    result = {}
    for ticker, rows in table.groupby(tickers.to_numpy(), sort=True).indices.items():
        result[str(ticker)] = validate_bars(table.iloc[rows], columns, str(ticker), origin, positions[rows])
    return result


def _data_files(directory: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.is_file() and table_suffix(path) in TABLE_SUFFIXES:
            files.setdefault(stem(path).upper(), path)
    return files


def load_price_path(path: Path, tickers: tuple[str, ...] | None) -> dict[str, TickerBars]:
    """Load bars from a per-ticker directory or one file; only the requested tickers when given."""
    if not path.exists():
        raise TradesimError(f"--data {path}: no such file or directory")
    if path.is_dir():
        files = _data_files(path)
        if not files:
            raise TradesimError(f"--data {path}: directory holds no data files ({', '.join(TABLE_SUFFIXES)})")
        wanted = tickers if tickers is not None else tuple(files)
        unknown = [t for t in wanted if t not in files]
        if unknown:
            raise TradesimError(f"--data {path}: unknown ticker {unknown[0]} (no file {unknown[0]}.csv or .parquet there)")
        loaded: dict[str, TickerBars] = {}
        for ticker in wanted:
            loaded.update(bars_from_table(read_table(files[ticker]), str(files[ticker]), ticker))
        return {t: loaded[t] for t in wanted if t in loaded}
    loaded = bars_from_table(read_table(path), str(path), stem(path).upper())
    if tickers is None:
        return loaded
    unknown = [t for t in tickers if t not in loaded]
    if unknown:
        raise TradesimError(f"--data {path}: unknown ticker {unknown[0]} (the file has {_some(loaded)})")
    return {t: loaded[t] for t in tickers}


def _some(names) -> str:
    names = sorted(names)
    return ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")


SAMPLE_FILE = "datasets/data/sp500_dataset.csv.gz"


def sample_path() -> Path:
    """The embedded sample: real daily closes of 20 US stocks that skfolio ships (BSD-3-Clause)."""
    import importlib.util

    spec = importlib.util.find_spec("skfolio")
    if spec is None or spec.origin is None:
        raise TradesimError("--data sample: the skfolio package is not installed (pip install skfolio)")
    return Path(spec.origin).parent / SAMPLE_FILE


def load_sample(tickers: tuple[str, ...] | None) -> dict[str, TickerBars]:
    """Load the embedded sample (wide: a Date column and one close column per ticker)."""
    path = sample_path()
    wide = read_table(path)
    date_column = wide.columns[0]
    available = [str(c) for c in wide.columns[1:]]
    wanted = tickers if tickers is not None else tuple(available)
    unknown = [t for t in wanted if t not in available]
    if unknown:
        raise TradesimError(f"--data sample: unknown ticker {unknown[0]} (the sample has {_some(available)})")
    positions = np.arange(len(wide))
    columns = {"date": "date", "close": "close"}
    return {
        ticker: validate_bars(
            pd.DataFrame({"date": wide[date_column], "close": wide[ticker]}), columns, ticker, f"sample ({path.name})", positions
        )
        for ticker in wanted
    }
