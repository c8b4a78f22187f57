"""Daily bars from files, the embedded sample, or any table: parsed and validated once.

Every source ends as one frame per ticker, indexed by session date, holding the prices as the
source printed them (`raw_open, raw_high, raw_low, raw_close`, `volume`) and one
`adjustment_step` per session: the factor by which the prices before that session are divided
to continue the adjusted series across it (a 2:1 split gives 2, a dividend D after a close P gives
1 / (1 - D/P), an ordinary day 1). Adjusted prices are derived from these in tradesim.market.data,
as of any date, so a split or dividend after that date cannot change them. Close-only sources
leave open/high/low empty.
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
    "split_coefficient": ("split_coefficient", "split coefficient", "stock splits", "splits", "split"),
    "dividend": ("dividend_amount", "dividend amount", "dividends", "dividend"),
}
PRICE_FIELDS = ("open", "high", "low", "close", "adj_close")
PRINTED_COLUMNS = ("raw_open", "raw_high", "raw_low", "raw_close", "volume")
SOURCE_COLUMNS = (*PRINTED_COLUMNS, "adjustment_step")
# Steps derived from a file's adj_close/close ratio: within this distance of 1 they are the file's
# rounding of the adjusted close, not a corporate action; others are rounded to STEP_DECIMALS.
STEP_TOLERANCE = 1e-6
STEP_DECIMALS = 8
# An open or close may sit outside [low, high] by float noise, no more.
RANGE_TOLERANCE = 1e-6
# Overnight moves by these ratios (either way, within SPLIT_MATCH) in a source with no adjusted close
# and no split column look like unadjusted splits: said loudly, never booked silently.
SPLIT_RATIOS = (1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 8.0, 10.0, 15.0, 20.0)
SPLIT_MATCH = 0.03
ACTION_SOURCES = {
    ("split_coefficient", "dividend"): "the split and dividend columns",
    ("split_coefficient",): "the split column",
    ("dividend",): "the dividend column",
}


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
    adjusted_by: str = ""  # what adjusted it: "adjusted close", one of ACTION_SOURCES, "the source (...)", or "" (nothing)
    suspect_splits: list[tuple[pd.Timestamp, float]] = field(default_factory=list)  # unadjusted jumps: date, ratio
    notes: list[str] = field(default_factory=list)  # what the source wants said in the run's notes


_TEXT_UNIT = pd.to_datetime(pd.Series(["2000-01-01"])).dt.unit


def parse_dates(values: pd.Series, origin: str, positions: np.ndarray) -> pd.DatetimeIndex:
    """Parse a date column into naive session dates, naming the first bad line."""
    if pd.api.types.is_datetime64_any_dtype(values):
        parsed = pd.to_datetime(values)
    else:
        text = values.astype("string").str.strip()
        # A leading ISO date is the session, whatever follows it: yfinance writes
        # `2014-01-02 00:00:00-05:00`, mixing -05:00 and -04:00 across daylight saving.
        iso = text.str.extract(r"^(\d{4}-\d{2}-\d{2})(?:[T ]|$)", expand=False)
        parsed = pd.to_datetime(iso.fillna(text), errors="coerce", format="mixed")
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
        for name in (*PRICE_FIELDS, "volume", "split_coefficient", "dividend")
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
        for name in ("open", "close"):
            if name not in values:
                continue
            outside = (values[name] > values["high"] * (1 + RANGE_TOLERANCE)) | (values[name] < values["low"] * (1 - RANGE_TOLERANCE))
            if outside.any():
                row = int(np.flatnonzero(outside)[0])
                raise TradesimError(
                    f"{origin}, line {line_number(positions[row])}: {name} {values[name][row]:g} is outside the day's range "
                    f"(low {values['low'][row]:g}, high {values['high'][row]:g}) for {ticker}; expected low <= {name} <= high"
                )

    raw_close = values["close"]
    adjusted = "adj_close" in values
    actions = [name for name in ("split_coefficient", "dividend") if name in values]
    suspects: list[tuple[pd.Timestamp, float]] = []
    if adjusted:
        steps, adjusted_by = adjustment_steps(values["adj_close"] / raw_close), "adjusted close"
    elif actions and prices_already_adjusted(values.get("open"), raw_close, values.get("split_coefficient")):
        steps, adjusted, adjusted_by = np.ones_like(raw_close), True, "the source (no jump at its splits)"
    elif actions:
        steps = action_steps(raw_close, values.get("split_coefficient"), values.get("dividend"))
        adjusted, adjusted_by = True, ACTION_SOURCES[tuple(actions)]
    else:
        steps, adjusted_by = np.ones_like(raw_close), ""
        suspects = unadjusted_jumps(dates, values.get("open"), raw_close)
    has_ohlc = all(name in values for name in ("open", "high", "low"))
    empty = np.full_like(raw_close, np.nan)
    bars = pd.DataFrame(
        {
            "raw_open": values["open"] if has_ohlc else empty,
            "raw_high": values["high"] if has_ohlc else empty,
            "raw_low": values["low"] if has_ohlc else empty,
            "raw_close": raw_close,
            "volume": values.get("volume", empty),
            "adjustment_step": steps,
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
        adjustment_dates=_adjustment_dates(bars.index, steps, values.get("split_coefficient")),
        adjusted_by=adjusted_by,
        suspect_splits=suspects,
    )


def prices_already_adjusted(open_: np.ndarray | None, close: np.ndarray, split: np.ndarray | None) -> bool:
    """Whether prices that come with a split column are adjusted already (yfinance's auto_adjust
    writes adjusted prices beside `Stock Splits`): no split in the column shows its jump."""
    if split is None:
        return False
    events = np.flatnonzero(np.isfinite(split) & (np.abs(split - 1.0) > 1e-3))
    events = events[events > 0]
    if not events.size:
        return False
    price = close[events] if open_ is None else np.where(np.isfinite(open_[events]), open_[events], close[events])
    move = np.log(close[events - 1] / price)
    return bool((np.abs(move) < np.abs(move - np.log(split[events]))).all())

def action_steps(close: np.ndarray, split: np.ndarray | None, dividend: np.ndarray | None) -> np.ndarray:
    """Adjustment steps from a source's own split and dividend columns, on the rows where each takes
    effect (the first session at the new price; the ex-dividend session): a split of s gives s, a
    dividend D after a close P gives 1 / (1 - D / P), with P in post-split terms on a day with both."""
    split_step = np.ones_like(close) if split is None else np.where(np.isfinite(split) & (split > 0), split, 1.0)
    steps = split_step.copy()
    if dividend is not None and close.size > 1:
        previous = np.r_[np.nan, close[:-1]] / split_step
        paid = np.nan_to_num(dividend, nan=0.0)
        valid = (paid > 0) & np.isfinite(previous) & (paid < previous)
        steps[valid] = split_step[valid] / (1.0 - paid[valid] / previous[valid])
    steps[0] = 1.0
    return np.round(steps, STEP_DECIMALS)


def unadjusted_jumps(dates: pd.DatetimeIndex, open_: np.ndarray | None, close: np.ndarray) -> list[tuple[pd.Timestamp, float]]:
    """Sessions whose price moved from the previous close by a common split ratio (either way):
    (date, previous close / price), for a source that carries no adjustment at all."""
    if close.size < 2:
        return []
    price = close[1:] if open_ is None else np.where(np.isfinite(open_[1:]), open_[1:], close[1:])
    ratio = close[:-1] / price
    found = []
    for candidate in SPLIT_RATIOS:
        for target in (candidate, 1 / candidate):
            hits = np.flatnonzero(np.abs(ratio / target - 1) < SPLIT_MATCH)
            found += [(dates[i + 1], float(ratio[i])) for i in hits]
    return sorted(found)


def suspect_note(ticker: str, origin: str, suspects: list[tuple[pd.Timestamp, float]]) -> str:
    shown = ", ".join(f"{day.date()} ({_ratio_text(ratio)})" for day, ratio in suspects[:5])
    return (
        f"WARNING: {ticker} ({origin}) has no adjusted close, split or dividend column, and its price jumps "
        f"by a split ratio overnight on {shown}{' ...' if len(suspects) > 5 else ''}: these look like unadjusted "
        "splits and are traded as price moves; give the source an adjusted close or a split column"
    )


def _ratio_text(ratio: float) -> str:
    return f"{ratio:.2f}:1" if ratio >= 1 else f"1:{1 / ratio:.2f}"


def adjustment_steps(factor: np.ndarray) -> np.ndarray:
    """Per-session steps from a back-adjustment factor (adj_close / close, one value per row).

    The step of a session depends only on that session and the one before it, so restating the
    factor after a later dividend (every earlier value multiplied by one constant) leaves it as it
    was: that is what makes adjusted prices as of a date independent of what happens later.
    """
    steps = np.ones_like(factor)
    if factor.size > 1:
        ratio = factor[1:] / factor[:-1]
        steps[1:] = np.where(np.abs(ratio - 1) < STEP_TOLERANCE, 1.0, np.round(ratio, STEP_DECIMALS))
    return steps


def _adjustment_dates(dates: pd.DatetimeIndex, steps: np.ndarray, split_coefficient: np.ndarray | None) -> list[pd.Timestamp]:
    """Dates of splits: from a split column when present, else adjustment steps of more than 20%."""
    if split_coefficient is not None:
        marked = np.flatnonzero(np.abs(np.nan_to_num(split_coefficient, nan=1.0) - 1.0) > 1e-3)
        return [dates[i] for i in marked]
    return [dates[i] for i in np.flatnonzero(np.abs(np.log(steps)) > np.log(1.2))]


def bars_from_table(table: pd.DataFrame, origin: str, ticker_from_name: str | None) -> dict[str, TickerBars]:
    """Split a table (long, with a ticker column, or one ticker's) into validated bars per ticker."""
    columns = match_columns(table, PRICE_ALIASES)
    missing = [name for name in ("date", "close") if name not in columns]
    if missing:
        raise TradesimError(
            f"{origin}: missing required column {missing[0]!r} "
            f"(accepted names: {', '.join(PRICE_ALIASES[missing[0]])}; found: {', '.join(map(str, table.columns))})"
        )
    if table.empty:
        raise TradesimError(f"{origin}: no data rows (a header and nothing under it)")
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


def load_price_frame(table: pd.DataFrame, tickers: tuple[str, ...] | None, origin: str) -> dict[str, TickerBars]:
    """Bars from a long DataFrame handed over in memory (date, ticker, OHLCV, optional adjusted
    close: the column names and aliases files accept; the date may be the index)."""
    if not isinstance(table.index, pd.RangeIndex):
        table = table.reset_index(drop=table.index.name is None and not isinstance(table.index, pd.DatetimeIndex))
    # Dates at the resolution parsed text has, so a frame's sessions (often ns) are a file's.
    table = table.assign(**{str(c): table[c].dt.as_unit(_TEXT_UNIT) for c in table.columns if pd.api.types.is_datetime64_any_dtype(table[c])})
    return _chosen(bars_from_table(table, origin, None), tickers, f"{origin}: unknown ticker {{ticker}} (the frame has {{names}})")


def _chosen(loaded: dict[str, TickerBars], tickers: tuple[str, ...] | None, unknown_message: str) -> dict[str, TickerBars]:
    """The requested tickers of a table's bars (all when None); the first missing one is an error
    (`unknown_message` with {ticker} and {names} in it, replaced as plain text)."""
    if tickers is None:
        return loaded
    unknown = [t for t in tickers if t not in loaded]
    if unknown:
        raise TradesimError(unknown_message.replace("{ticker}", unknown[0]).replace("{names}", some_names(loaded)))
    return {t: loaded[t] for t in tickers}


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
    return _chosen(bars_from_table(read_table(path), str(path), stem(path).upper()), tickers, f"--data {path}: unknown ticker {{ticker}} (the file has {{names}})")


def some_names(names) -> str:
    """Up to 12 names, sorted, and how many more."""
    names = sorted(names)
    return ", ".join(names[:12]) + (f" and {len(names) - 12} more" if len(names) > 12 else "")


SAMPLE_DIRECTORY = Path(__file__).resolve().parent.parent / "data" / "stocknet"
SAMPLE_LONG_FILE = "datasets/data/sp500_dataset.csv.gz"


def sample_news_path() -> Path:
    """The embedded sample's tweets (used when `--data sample` is given no `--news`)."""
    return SAMPLE_DIRECTORY / "news.jsonl.xz"


def sample_long_path() -> Path:
    """`sample-long`: real daily closes of 20 US stocks, 1990-2022, that skfolio ships (BSD-3-Clause)."""
    import importlib.util

    spec = importlib.util.find_spec("skfolio")
    if spec is None or spec.origin is None:
        raise TradesimError("--data sample-long: the skfolio package is not installed (pip install skfolio)")
    return Path(spec.origin).parent / SAMPLE_LONG_FILE


def load_sample(source: str, tickers: tuple[str, ...] | None) -> dict[str, TickerBars]:
    """`sample`: the StockNet slice inside the package (OHLCV, adjusted close, 2014-2015).
    `sample-long`: closes only (a wide file: a Date column and one close column per ticker)."""
    if source == "sample":
        path = SAMPLE_DIRECTORY / "prices.csv.xz"
        table = read_table(path)
        wanted = _sample_tickers(source, tickers, list(dict.fromkeys(table["ticker"])))
        loaded = bars_from_table(table[table["ticker"].isin(wanted)], f"sample ({path.name})", None)
        return {t: loaded[t] for t in wanted}
    path = sample_long_path()
    wide = read_table(path)
    wanted = _sample_tickers(source, tickers, [str(c) for c in wide.columns[1:]])
    positions = np.arange(len(wide))
    columns = {"date": "date", "close": "close"}
    return {
        ticker: validate_bars(
            pd.DataFrame({"date": wide[wide.columns[0]], "close": wide[ticker]}), columns, ticker, f"sample-long ({path.name})", positions
        )
        for ticker in wanted
    }


def _sample_tickers(source: str, tickers: tuple[str, ...] | None, available: list[str]) -> tuple[str, ...]:
    wanted = tickers if tickers is not None else tuple(available)
    unknown = [t for t in wanted if t not in available]
    if unknown:
        raise TradesimError(f"--data {source}: unknown ticker {unknown[0]} (the sample has {some_names(available)})")
    return wanted
