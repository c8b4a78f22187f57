"""MarketData (everything loaded, validated once) and MarketView (what is known at one decision).

Strategies receive only views. A view is the data cut at the decision date: bars up to and
including the session, news visible before that session's cutoff. Its adjusted prices are adjusted
*as of that date* (prices as printed, continued backwards across the splits and dividends known by
then; the last close is the printed close), so a split, a dividend or a restated history after the
date changes nothing a view hands out. The arrays behind the data are read-only and every price a
view computes is a fresh array: a strategy cannot alter what later views or the engine see.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.market.calendar import DEFAULT_CUTOFF, decision_cutoffs
from tradesim.market.fundamentals import empty_fundamentals, latest_values, load_fundamentals
from tradesim.market.news import empty_news, load_news
from tradesim.market.prices import ACTION_SOURCES, PRINTED_COLUMNS, TickerBars, load_price_frame, load_price_path, load_sample, sample_news_path, some_names, suspect_note
from tradesim.market.yahoo import load_yahoo
from tradesim.tickers import parse_tickers

PRICE_FIELDS = ("open", "high", "low", "close")  # adjusted, as of the date they are read at
FIELDS = (*PRICE_FIELDS, "volume", "raw_open", "raw_high", "raw_low", "raw_close", "adjustment_step")
# How many missing bars in a row (a vendor's null rows) strategies carry over from the session
# before, so that one missing bar does not drop a ticker from a decision or from every window that
# contains it; a longer gap, or data that has ended, leaves the ticker out.
CARRIED_BARS = 1
# The `data` of a run whose bars were handed over as a DataFrame (tradesim.backtest(data=frame)).
IN_MEMORY = "<DataFrame>"
_KEY_SHIFT = 1 << 34  # news index key: ticker code * 2**34 + seconds since 1900 (good until 2444)
_EPOCH_1900_S = 2_208_988_800


def _sealed(array: np.ndarray) -> np.ndarray:
    """A read-only copy backed by immutable bytes: unlike a plain read-only flag, which the owner of
    an array (reachable as `.base` from any slice) can turn back on, this one cannot be reopened."""
    return np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=array.dtype).reshape(array.shape)


def _sealed_objects(array: np.ndarray) -> np.ndarray:
    """Object arrays (ids, texts) cannot live in bytes: a read-only copy that owns its data. Its
    flag can be turned back on, but only ever on this copy, which nothing else reads."""
    array = np.array(array, dtype=object)
    array.flags.writeable = False
    return array


def _source(name: str) -> str:
    if name not in FIELDS:
        raise KeyError(f"unknown bar field {name!r} (fields: {', '.join(FIELDS)})")
    return f"raw_{name}" if name in PRICE_FIELDS else name


class NewsIndex:
    """The news sorted by ticker, then visibility: each ticker's items are one contiguous block,
    so the items visible in any window of sessions are found by binary search, for every ticker
    at once. Market-wide items (no ticker) form one more block. Internal to the data: views hand
    out windows cut from it, never the index itself."""

    def __init__(self, news: pd.DataFrame, tickers: tuple[str, ...]):
        codes_of = {t: i for i, t in enumerate(tickers)}
        self.market_code = len(tickers)
        codes = np.array([self.market_code if pd.isna(t) else codes_of[t] for t in news["ticker"]], dtype=np.int64)
        visible_ns = news["visible_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
        order = np.lexsort((np.arange(len(news)), visible_ns, codes))
        self.keys = _sealed(codes[order] * _KEY_SHIFT + self._seconds(visible_ns[order]))
        self.visible_ns = _sealed(visible_ns[order])
        self.published_ns = _sealed(news["published_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)[order])
        self.ids = _sealed_objects(news["id"].to_numpy(dtype=object)[order])
        self.texts = _sealed_objects(news["text"].to_numpy(dtype=object)[order])

    @staticmethod
    def _seconds(instants_ns: np.ndarray) -> np.ndarray:
        """Whole seconds since 1900: cutoffs are whole minutes, so `visible < cutoff` is unchanged."""
        return np.floor_divide(instants_ns, 1_000_000_000) + _EPOCH_1900_S

    def bounds(self, after_ns: int | None, before_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """Per ticker code (and the market block last): the slice of items visible at or after
        `after_ns` (None: from the first) and strictly before `before_ns`."""
        base = np.arange(self.market_code + 1, dtype=np.int64) * _KEY_SHIFT
        stop = np.searchsorted(self.keys, base + self._seconds(np.int64(before_ns)), side="left")
        first = base if after_ns is None else base + self._seconds(np.int64(after_ns))
        return np.searchsorted(self.keys, first, side="left"), stop


class NewsWindow:
    """The news items that count for the last sessions of one view, per ticker.

    Built from copies of the index's slices for this window only: it holds no item visible after
    the view's cutoff, and editing what it hands out changes nothing any other view sees."""

    __slots__ = ("_codes", "_offsets", "_ids", "_texts", "_visible_ns", "_published_ns", "_sessions", "_cutoffs")

    def __init__(self, data: MarketData, after_ns: int | None, before_ns: int, sessions: pd.DatetimeIndex, cutoffs: pd.DatetimeIndex):
        index = data.news_index
        starts, stops = index.bounds(after_ns, before_ns)
        lengths = stops - starts
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        positions = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])
        self._codes = data.ticker_codes
        self._offsets = offsets
        self._ids = _sealed_objects(index.ids[positions])
        self._texts = _sealed_objects(index.texts[positions])
        self._visible_ns = _sealed(index.visible_ns[positions])
        self._published_ns = _sealed(index.published_ns[positions])
        self._sessions, self._cutoffs = sessions, cutoffs

    def _slice(self, ticker: str | None) -> slice:
        code = len(self._codes) if ticker is None else self._codes[ticker]
        return slice(int(self._offsets[code]), int(self._offsets[code + 1]))

    def count(self, ticker: str | None) -> int:
        part = self._slice(ticker)
        return part.stop - part.start

    def texts(self, ticker: str | None) -> np.ndarray:
        """Texts of the ticker's items (None: market-wide items), oldest first."""
        return self._texts[self._slice(ticker)]

    def ids(self, ticker: str | None) -> np.ndarray:
        return self._ids[self._slice(ticker)]

    def visible_ns(self, ticker: str | None) -> np.ndarray:
        return self._visible_ns[self._slice(ticker)]

    def frame(self, ticker: str | None) -> pd.DataFrame:
        """The items as a table (a copy), each with the `session` it first counts for."""
        part = self._slice(ticker)
        visible_at = pd.DatetimeIndex(self._visible_ns[part].astype("datetime64[ns]")).tz_localize("UTC")
        items = pd.DataFrame(
            {
                "id": pd.array(self._ids[part], dtype="string"),
                "ticker": pd.array([ticker] * (part.stop - part.start), dtype="string"),
                "published_at": pd.DatetimeIndex(self._published_ns[part].astype("datetime64[ns]")).tz_localize("UTC"),
                "visible_at": visible_at,
                "text": pd.array(self._texts[part], dtype="string"),
            }
        )
        return items.assign(session=self._sessions[self._cutoffs.searchsorted(visible_at, side="right")])


class MarketView:
    """Bars and news as known after the close of `date`, before its decision cutoff."""

    def __init__(self, data: MarketData, end: int):
        self._data = data
        self._end = end
        self.date: pd.Timestamp = data.sessions[end - 1]
        self.cutoff: pd.Timestamp = data.cutoffs[end - 1]
        self.tickers = data.tickers
        self.has_ohlc = data.has_ohlc

    @property
    def sessions(self) -> pd.DatetimeIndex:
        return self._data.sessions[: self._end]

    def at(self, date: pd.Timestamp) -> MarketView:
        """The view of an earlier session of this view (it reveals less, never more)."""
        end = int(self.sessions.searchsorted(pd.Timestamp(date), side="right"))
        if end == 0 or self.sessions[end - 1] != pd.Timestamp(date):
            raise ValueError(f"{pd.Timestamp(date).date()} is not a session of this view (up to {self.date.date()})")
        return MarketView(self._data, end)

    @property
    def cutoffs(self) -> pd.DatetimeIndex:
        """The decision cutoff (UTC) of each session in the view."""
        return self._data.cutoffs[: self._end]

    def window(self, name: str, last: int | None = None) -> np.ndarray:
        """sessions x tickers of one field over the view's last `last` sessions (all when None).

        `open, high, low, close` are adjusted as of the view's date (a fresh array); `raw_*` are
        the prices as printed, `volume` as the source gives it and `adjustment_step` each session's
        split/dividend step (read-only arrays)."""
        return self._read(name, 0 if last is None else max(0, self._end - last), slice(None))

    def _read(self, name: str, start: int, columns: slice | int) -> np.ndarray:
        """One field from session `start` to the view's date, for `columns`: prices adjusted as
        of that date (printed x adjustment[t] / adjustment[date], a fresh array), others as stored."""
        values = self._data.arrays[_source(name)][start : self._end, columns]
        if name not in PRICE_FIELDS:
            return values
        adjustment = self._data.arrays["adjustment"]
        return values * (adjustment[start : self._end, columns] / adjustment[self._end - 1, columns])

    def field(self, name: str, last: int | None = None) -> pd.DataFrame:
        start = 0 if last is None else max(0, self._end - last)
        return pd.DataFrame(self.window(name, last), index=self.sessions[start:], columns=pd.Index(self.tickers, name="ticker"))

    @property
    def close(self) -> pd.DataFrame:
        """Closes adjusted as of the view's date, sessions x tickers."""
        return self.field("close")

    def ticker_bars(self, ticker: str, last: int | None = None) -> pd.DataFrame:
        """One ticker's bars up to `date` (adjusted `open, high, low, close`, `volume`, the printed
        `raw_*` prices, `adjustment_step`), without empty rows; only the last `last` sessions when given."""
        column = self._data.tickers.index(ticker)
        start = 0 if last is None else max(0, self._end - last)
        columns = {name: np.array(self._read(name, start, column)) for name in FIELDS}
        frame = pd.DataFrame(columns, index=self.sessions[start:])
        return frame[np.isfinite(columns["close"])]

    def news_window(self, last: int | None = None) -> NewsWindow:
        """The news counting for the view's last `last` sessions (all visible news when None)."""
        data = self._data
        after = None if last is None or last >= self._end else int(data.cutoffs.asi8[self._end - last - 1])
        return NewsWindow(data, after, int(self.cutoff.value), self.sessions, self.cutoffs)

    def news_for(self, ticker: str, last: int | None = None) -> pd.DataFrame:
        """The ticker's visible news, each item with the `session` it first counts for; only items
        counting for the last `last` sessions when given. Market-wide items: `market_news`."""
        return self.news_window(last).frame(ticker)

    def market_news(self, last: int | None = None) -> pd.DataFrame:
        """Visible items without a ticker (macro headlines, central-bank statements)."""
        return self.news_window(last).frame(None)

    @property
    def news(self) -> pd.DataFrame:
        """Every visible item (a copy), in the order it became visible."""
        visible = int(self._data.news["visible_at"].searchsorted(self.cutoff, side="left"))
        return self._data.news.iloc[:visible].copy()

    def fundamentals(self) -> pd.DataFrame:
        """Per (ticker, field): the latest period's value as published before the cutoff, with the
        previous period's (`previous_value`); restatements published later are not seen."""
        rows = self._data.fundamentals
        visible = int(rows["visible_at"].searchsorted(self.cutoff, side="left"))
        return latest_values(rows.iloc[:visible].copy())


@dataclass(frozen=True, eq=False)
class MarketData:
    """Validated bars and news for a set of tickers.

    `arrays` (sessions x tickers, read-only) hold the printed prices, volume, each session's
    `adjustment_step` and `adjustment`: the running product of the steps, so that printed price x
    adjustment[t] / adjustment[d] is the price of session t adjusted as of session d.
    """

    source: str
    tickers: tuple[str, ...]
    sessions: pd.DatetimeIndex
    arrays: dict[str, np.ndarray]
    news: pd.DataFrame
    has_ohlc: bool
    adjusted: bool
    cutoff: str = DEFAULT_CUTOFF
    details: dict[str, TickerBars] = field(default_factory=dict, repr=False)
    notes: tuple[str, ...] = ()
    fundamentals: pd.DataFrame = field(default_factory=empty_fundamentals, repr=False)

    @cached_property
    def cutoffs(self) -> pd.DatetimeIndex:
        """The decision cutoff (UTC) of every session."""
        return decision_cutoffs(self.sessions, self.cutoff)

    @cached_property
    def listed(self) -> pd.DataFrame:
        """Per ticker: its first and last session with a close (it is listed in between; loading
        keeps no ticker without one)."""
        priced = np.isfinite(self.arrays["raw_close"])
        first, last = priced.argmax(axis=0), len(self.sessions) - 1 - priced[::-1].argmax(axis=0)
        return pd.DataFrame({"first": self.sessions[first], "last": self.sessions[last]}, index=pd.Index(self.tickers, name="ticker"))

    @cached_property
    def ticker_codes(self) -> MappingProxyType:
        """Ticker -> column (a read-only mapping)."""
        return MappingProxyType({t: i for i, t in enumerate(self.tickers)})

    @cached_property
    def news_index(self) -> NewsIndex:
        return NewsIndex(self.news, self.tickers)

    @cached_property
    def bars(self) -> dict[str, pd.DataFrame]:
        """Every field, sessions x tickers, prices adjusted as of the last session (what the engine
        fills and values at). Read-only."""
        last = MarketView(self, len(self.sessions))
        return {name: pd.DataFrame(_sealed(np.array(last.window(name))), index=self.sessions, columns=pd.Index(self.tickers, name="ticker")) for name in FIELDS}

    def view(self, as_of: pd.Timestamp) -> MarketView:
        """What is known after the close of session `as_of`."""
        as_of = pd.Timestamp(as_of)
        end = int(self.sessions.searchsorted(as_of, side="right"))
        if end == 0 or self.sessions[end - 1] != as_of:
            raise ValueError(f"{as_of.date()} is not a session of this data")
        return MarketView(self, end)

    def __getstate__(self) -> dict:
        """Pickled (a sweep ships data to its workers) without what was computed from it: cached
        views of the arrays, and the fingerprint, which the receiver computes again."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}

    def __setstate__(self, state: dict) -> None:
        for name, value in state.items():
            object.__setattr__(self, name, value)

    def sessions_from(self, first: int) -> MarketData:
        """The same data without its first `first` sessions (a walk-forward training window):
        prices adjusted as of any later session are unchanged, news and fundamentals are kept."""
        if first == 0:
            return self
        arrays = {name: _sealed(np.array(array[first:])) for name, array in self.arrays.items()}
        return dataclasses.replace(self, sessions=self.sessions[first:], arrays=arrays)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 of every printed price, adjustment and news item: two runs on equal inputs share it."""
        digest = hashlib.sha256()
        digest.update(",".join(self.tickers).encode())
        digest.update(self.sessions.asi8.tobytes())
        for name in (*PRINTED_COLUMNS, "adjustment_step"):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(self.arrays[name]).tobytes())
        for table in (self.news, self.fundamentals):
            if not table.empty:
                digest.update(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
        return digest.hexdigest()


def load_bars(source: str, tickers: tuple[str, ...] | None, start=None, end=None) -> dict[str, TickerBars]:
    """Per-ticker validated bars from `sample`, `sample-long`, `yahoo` or a path."""
    if source in ("sample", "sample-long"):
        return load_sample(source, tickers)
    if source == "yahoo":
        return load_yahoo(
            tickers or (),
            None if start is None else pd.Timestamp(start).date(),
            None if end is None else pd.Timestamp(end).date(),
        )
    return load_price_path(Path(source), tickers)


def _stack(frames: dict[str, pd.DataFrame], sessions: pd.DatetimeIndex) -> dict[str, np.ndarray]:
    """Per-ticker frames -> sessions x tickers arrays, with the running adjustment product."""
    arrays = {}
    for name in (*PRINTED_COLUMNS, "adjustment_step"):
        arrays[name] = np.column_stack([frame[name].reindex(sessions).to_numpy(dtype=float) for frame in frames.values()])
    steps = arrays["adjustment_step"]
    steps[0] = np.where(np.isfinite(steps[0]), 1.0, np.nan)  # the data starts here: nothing earlier to continue
    arrays["adjustment"] = np.cumprod(np.nan_to_num(steps, nan=1.0), axis=0)
    return {name: _sealed(array) for name, array in arrays.items()}


def load_market_data(
    source: str | pd.DataFrame,
    tickers,
    start=None,
    end=None,
    news: str | None = None,
    cutoff: str = DEFAULT_CUTOFF,
    fundamentals: str | None = None,
) -> MarketData:
    """Load, validate and cut to [start, end] the bars (and news, fundamentals) of the given
    tickers (`all`, lower case, or None: every ticker of the source; `ALL` is Allstate). `source`:
    `sample`, `sample-long`, `yahoo`, a file or directory, or a long DataFrame of bars."""
    frame = None
    if isinstance(source, pd.DataFrame):
        frame, source = source, IN_MEMORY
    wanted = None if isinstance(tickers, str) and tickers.strip() == "all" else parse_tickers(tickers)  # "ALL" is Allstate
    if wanted is None and source == "yahoo":
        raise TradesimError("--tickers all: the yahoo source has no list of tickers; name them")
    start = None if start is None else pd.Timestamp(start)
    end = None if end is None else pd.Timestamp(end)
    if start is not None and end is not None and start > end:
        raise TradesimError(f"--start {start.date()} is after --end {end.date()}")
    loaded = load_price_frame(frame, wanted, "data (a DataFrame)") if frame is not None else load_bars(source, wanted, start, end)
    frames: dict[str, pd.DataFrame] = {}
    outside: list[str] = []
    suspects: list[str] = []
    for ticker, item in loaded.items():
        bars = item.bars.loc[start:end]
        if bars.empty and wanted is None:  # `all`: a ticker listed only outside the dates is not part of the run
            outside.append(ticker)
            continue
        if bars.empty:
            raise TradesimError(
                f"{item.origin}: no bars for {ticker} between {_day(start, 'the start')} and {_day(end, 'the end')} "
                f"(it covers {item.bars.index[0].date()}..{item.bars.index[-1].date()})"
            )
        frames[ticker] = bars
        jumps = [(day, ratio) for day, ratio in item.suspect_splits if bars.index[0] < day <= bars.index[-1]]
        if jumps:
            suspects.append(suspect_note(ticker, item.origin, jumps))
    if not frames:
        raise TradesimError(f"{source}: no ticker has bars between {_day(start, 'the start')} and {_day(end, 'the end')}")
    notes = []
    if outside:
        loaded = {ticker: item for ticker, item in loaded.items() if ticker in frames}
        notes.append(
            f"--tickers all: {len(outside)} tickers have no bars between {_day(start, 'the start')} and {_day(end, 'the end')} "
            f"and are left out ({some_names(outside)})"
        )
    order = tuple(frames)
    sessions = pd.DatetimeIndex(sorted(set().union(*(frame.index for frame in frames.values()))), name="date")
    notes += suspects + [note for item in loaded.values() for note in item.notes]
    by_actions = {}
    for ticker, item in loaded.items():
        if item.adjusted_by in ACTION_SOURCES.values():
            by_actions.setdefault(item.adjusted_by, []).append(ticker)
    for columns, names in by_actions.items():
        notes.append(f"no adjusted close: prices of {some_names(names)} are adjusted from {columns} of the source")
    news_items = empty_news()
    if news is None and source == "sample":
        news = str(sample_news_path())
    if news is not None:
        loaded_news = load_news(Path(news), order)
        last_cutoff = decision_cutoffs(sessions, cutoff)[-1]
        news_items = loaded_news.items[loaded_news.items["visible_at"] < last_cutoff].reset_index(drop=True)
        notes.extend(loaded_news.notes)
    fundamental_rows = empty_fundamentals()
    if fundamentals is not None:
        fundamental_rows = load_fundamentals(Path(fundamentals), order)
        if fundamental_rows.empty:
            notes.append(f"--fundamentals {fundamentals}: no rows for the tickers of the run")
    return MarketData(
        source=source,
        tickers=order,
        sessions=sessions,
        arrays=_stack(frames, sessions),
        news=news_items,
        has_ohlc=all(item.has_ohlc for item in loaded.values()),
        adjusted=all(item.adjusted for item in loaded.values()),
        cutoff=cutoff,
        details=loaded,
        notes=tuple(notes),
        fundamentals=fundamental_rows,
    )


def _day(value, default: str) -> str:
    return default if value is None else str(pd.Timestamp(value).date())
