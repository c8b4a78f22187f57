"""The quant corpus and ACL18 inputs: price rows in the FLARE/PIXIU stock-movement table format.

`date,open,high,low,close,adj-close,inc-5,...,inc-30`, every value a percentage with one decimal:
open/high/low against the same day's close, close and adj-close against the previous day, inc-k the
mean adjusted close of the last k sessions against today's. A row for day t holds day t's return,
so rows are generated only for sessions strictly before the cut-off.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from tradesim.errors import TradesimError

HEADER = "date,open,high,low,close,adj-close,inc-5,inc-10,inc-15,inc-20,inc-25,inc-30"
WINDOWS = (5, 10, 15, 20, 25, 30)
ROWS_PER_DOCUMENT = 20


def flare_rows(bars: pd.DataFrame) -> pd.DataFrame:
    """Columns open, high, low, close, adj_close (indexed by date, ascending, raw or split-adjusted
    OHLC) -> the table's percentages. Where the close moves unlike the adjusted close by more than a
    third (a split in raw prices), `close` is taken from the adjusted close."""
    bars = bars.dropna(subset=["open", "high", "low", "close", "adj_close"])
    close, adj = bars["close"], bars["adj_close"]
    table = pd.DataFrame(index=bars.index)
    for column in ("open", "high", "low"):
        table[column] = (bars[column] / close - 1) * 100
    close_change = close / close.shift(1)
    adj_change = adj / adj.shift(1)
    split_like = (close_change / adj_change - 1).abs() > 1 / 3
    table["close"] = (close_change.where(~split_like, adj_change) - 1) * 100
    table["adj-close"] = (adj_change - 1) * 100
    for k in WINDOWS:
        table[f"inc-{k}"] = (adj.rolling(k).mean() / adj - 1) * 100
    return table.dropna().round(1)


def format_rows(table: pd.DataFrame) -> list[str]:
    values = table.to_numpy()
    dates = [d.strftime("%Y-%m-%d") for d in table.index]
    return [d + "," + ",".join(f"{v:.1f}" for v in row) for d, row in zip(dates, values)]


def describe_row(ticker: str, day: pd.Timestamp, row: pd.Series) -> str:
    direction = "rose" if row["adj-close"] > 0 else "fell" if row["adj-close"] < 0 else "was unchanged"
    trend = "below" if row["inc-20"] > 0 else "above"
    return (
        f"On {day:%Y-%m-%d} {ticker} {direction} {abs(row['adj-close']):.1f}% (close {row['close']:+.1f}%), "
        f"traded between {row['low']:+.1f}% and {row['high']:+.1f}% of the close, and ended {trend} its 20-day average "
        f"by {abs(row['inc-20']):.1f}%."
    )


def read_price_source(path: Path) -> dict[str, pd.DataFrame]:
    """A directory of per-ticker CSVs (StockNet: Date, Open, High, Low, Close, Adj Close) or one long
    CSV (S&P: ticker, date, open, high, low, close, adjusted_close) -> bars per ticker."""
    frames: dict[str, pd.DataFrame] = {}
    if path.is_dir():
        for file in sorted(path.glob("*.csv")):
            frames[file.stem] = pd.read_csv(file)
    elif path.is_file():
        frame = pd.read_csv(path)
        if "ticker" not in frame:
            raise TradesimError(f"{path}: expected a ticker column in a long price file")
        frames = {t: g.drop(columns="ticker") for t, g in frame.groupby("ticker", sort=True)}
    else:
        raise TradesimError(f"{path}: price source for the quant corpus not found")
    result = {}
    for ticker, frame in frames.items():
        frame = frame.rename(columns=lambda c: str(c).strip().lower().replace(" ", "_"))
        frame = frame.rename(columns={"timestamp": "date", "adjusted_close": "adj_close"})
        missing = {"date", "open", "high", "low", "close", "adj_close"} - set(frame.columns)
        if missing:
            raise TradesimError(f"{path} ({ticker}): missing price columns {', '.join(sorted(missing))}")
        frame["date"] = pd.to_datetime(frame["date"])
        numeric = frame[["open", "high", "low", "close", "adj_close"]].apply(pd.to_numeric, errors="coerce")
        result[ticker] = numeric.set_index(frame["date"]).sort_index()
    return result


def quant_documents(path: Path, cutoff: pd.Timestamp) -> list[str]:
    """Documents of ROWS_PER_DOCUMENT table rows (with the header) followed by one sentence per row,
    for sessions strictly before `cutoff`, ticker by ticker."""
    documents = []
    for ticker, bars in read_price_source(path).items():
        table = flare_rows(bars[bars.index < cutoff])
        if table.empty:
            continue
        lines = format_rows(table)
        for start in range(0, len(table), ROWS_PER_DOCUMENT):
            part = table.iloc[start : start + ROWS_PER_DOCUMENT]
            text = "\n".join([f"{ticker} Context: {HEADER}", *lines[start : start + ROWS_PER_DOCUMENT]])
            text += "\n" + " ".join(describe_row(ticker, day, row) for day, row in part.iterrows())
            documents.append(text)
    return documents


def window_text(table: pd.DataFrame, end: pd.Timestamp, sessions: int = 5) -> str | None:
    """The last `sessions` rows up to and including `end`, as the table with its header (ACL18 input)."""
    upto = table.loc[:end]
    if len(upto) < sessions or upto.index[-1] != end:
        return None
    rows = format_rows(upto.iloc[-sessions:])
    return "\n".join([f"Context: {HEADER}", *rows])
