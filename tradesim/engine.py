"""Target weights -> orders -> fills -> equity: one session step (`rebalance`) for backtests and
paper accounts alike, looped over the sessions that fill orders.

Convention (the tests hold it equal to a plain numpy implementation and to vectorbt's
`Portfolio.from_orders`, the independent oracle):

* A row of `weights` dated `d` is a rebalance decided after the close of session `d`: every
  ticker's position is set to that fraction of portfolio value (negative = short; a ticker missing
  from the row targets 0). Sessions without a row hold what they have.
* It fills at the next session: at its open (`next-open`) or close (`next-close`); `same-close`
  (the papers' convention, flagged in every output) fills at the close of `d` itself, as a
  market-on-close order that treats that close as known. The portfolio value used for sizing is
  cash plus positions marked at those fill prices.
* Sells execute before buys; a buy is limited to the cash available (no leverage beyond what short
  sales bring in). Fractional shares.
* Commission is `cost_bps` of traded value; slippage moves the fill price by `slippage_bps`
  against the trader.
* A next-open order for a session whose open is empty fills at that session's close (its trade
  carries the note `no open: filled at close`, and the run says how many).
* Weights must name only tickers of the prices and carry one row per decision date: anything
  else is refused, never dropped or resolved silently.
* An order for a ticker without a price at its fill session (not listed yet, delisted, halted) is
  skipped and reported. A ticker whose data ends before the data does is closed at its last close,
  free of costs, and the cash is there for the next fills (the close-out is a row of `trades`
  dated its last session, with note `delisted`).
* Equity is cash plus positions marked at each session's close (a ticker without a price that
  session at its last known close).
* Ruin: equity at or below zero at a close ends the account there: every position is closed at
  that close (trades noted `ruined`), and equity is 0 from then on; nothing trades again. A
  negative equity curve is never produced.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradesim.config import FILL_MODES, FILL_RULES

DELISTED = "delisted"
RUINED = "ruined"


@dataclass(frozen=True)
class SimulationResult:
    equity: pd.Series  # portfolio value at each session's close, from the first decision date
    positions: pd.DataFrame  # shares held at each close
    trades: pd.DataFrame  # one row per fill: date, ticker, side, shares, price, value, fees, note
    gross_exposure: pd.Series  # sum of |position value| / equity at each close
    unfilled: pd.DatetimeIndex  # decisions with no session to fill at (the newest ones)
    skipped: pd.DataFrame  # orders without a fill price: date (fill session), ticker, weight
    delisted: dict[str, pd.Timestamp]  # ticker -> last session, for tickers whose data ends early
    filled_at_close: pd.DataFrame  # next-open orders whose session had no open: date, ticker
    ruined: pd.Timestamp | None = None  # the close at which equity reached zero or below (then 0 for good)
    capital: float | None = None  # the cash before the first fill

    @property
    def returns(self) -> pd.Series:
        """Daily returns of the equity curve, up to the close of ruin when there was one. When the
        first session already holds fills (same-close on the data's first session), its return from
        the capital is the first, so the first fill's costs are always measured."""
        equity = self.equity if self.ruined is None else self.equity.loc[: self.ruined]
        returns = equity.pct_change()
        if self.capital is not None and not np.isclose(equity.iloc[0], self.capital, rtol=0, atol=1e-9):
            returns.iloc[0] = equity.iloc[0] / self.capital - 1
            return returns
        return returns.iloc[1:]


@dataclass(frozen=True)
class Schedule:
    """Decisions placed on their fill sessions: arrays sessions x tickers from the first decision."""

    targets: np.ndarray  # NaN where no order is sent
    fill_prices: np.ndarray
    valuation: np.ndarray  # closes, carried forward over sessions without a price
    free: np.ndarray  # True where an order is a delisting close-out (no costs)
    sessions: pd.DatetimeIndex
    unfilled: pd.DatetimeIndex
    skipped: pd.DataFrame
    delisted: dict[str, pd.Timestamp]
    at_close: np.ndarray  # True where a next-open order fills at the close (the open is empty)

    @property
    def marks(self) -> np.ndarray:
        """The valuation with any finite number before a ticker's first price (positions are 0 there)."""
        return np.where(np.isfinite(self.valuation), self.valuation, 1.0)


NO_OPEN = "no open: filled at close"


def fill_prices_of(fill: str, open_: np.ndarray | None, close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The price each order fills at under `fill` (FILL_RULES), and where an open fill found no
    open and took that session's close instead (NO_OPEN)."""
    if FILL_RULES[fill][0] == "open":
        at_close = ~np.isfinite(open_) & np.isfinite(close)
        return np.where(at_close, close, open_), at_close
    return np.array(close, dtype=float), np.zeros(np.shape(close), dtype=bool)


def fill_schedule(
    weights: pd.DataFrame,
    open_: pd.DataFrame | None,
    close: pd.DataFrame,
    fill: str,
    start: pd.Timestamp | None = None,
) -> Schedule:
    """Place each decision's targets on its fill session, skip orders without a price, and add
    the close-outs of tickers whose data ends."""
    if fill not in FILL_MODES:
        raise ValueError(f"fill must be one of {FILL_MODES}, got {fill!r}")
    sessions_all = close.index
    unknown = [str(t) for t in weights.columns if t not in close.columns]
    if unknown:
        raise ValueError(f"weights name tickers the prices do not have: {', '.join(unknown[:5])}")
    if weights.index.has_duplicates:
        raise ValueError(f"weights hold more than one row for decision date {weights.index[weights.index.duplicated()][0]}")
    weights = weights.reindex(columns=close.columns).fillna(0.0).sort_index()
    if weights.empty:
        raise ValueError("no decisions to simulate")
    decision_positions = sessions_all.get_indexer(weights.index)
    if (decision_positions < 0).any():
        missing = weights.index[decision_positions < 0][0]
        raise ValueError(f"decision date {missing} is not a session of the price data")
    first = decision_positions[0] if start is None else int(sessions_all.searchsorted(pd.Timestamp(start)))
    if first > decision_positions[0]:
        raise ValueError("start is after the first decision")
    if fill == "same-close" and first == decision_positions[0] and first > 0:
        first -= 1  # the curve starts at the capital before the first fill, so its costs are in the returns
    sessions = sessions_all[first:]
    close_values = close.to_numpy(dtype=float)[first:]
    valuation = pd.DataFrame(close.to_numpy(dtype=float)).ffill().to_numpy()[first:]
    if FILL_RULES[fill][0] == "open":
        if open_ is None:
            raise ValueError("next-open fills need open prices")
        open_values = open_.reindex(index=close.index, columns=close.columns).to_numpy(dtype=float)[first:]
    else:
        open_values = None
    fill_prices, at_close = fill_prices_of(fill, open_values, close_values)

    fill_rows = decision_positions - first + FILL_RULES[fill][1]
    fillable = fill_rows < len(sessions)
    targets = np.full(close_values.shape, np.nan)
    targets[fill_rows[fillable]] = weights.to_numpy(dtype=float)[fillable]
    unpriced = np.isfinite(targets) & ~np.isfinite(fill_prices)
    rows, columns = np.nonzero(unpriced & (targets != 0))
    skipped = pd.DataFrame({"date": sessions[rows], "ticker": close.columns[columns], "weight": targets[rows, columns]})
    targets[unpriced] = np.nan

    free = np.zeros(close_values.shape, dtype=bool)
    delisted = {}
    priced = np.isfinite(close.to_numpy(dtype=float))
    last_priced = len(sessions_all) - 1 - np.argmax(priced[::-1], axis=0)
    for column in np.flatnonzero(priced.any(axis=0) & (last_priced < len(sessions_all) - 1)):
        row = last_priced[column] - first + 1  # the close-out is booked before the next fills
        if 0 < row < len(sessions):
            targets[row, column] = 0.0
            fill_prices[row, column] = valuation[row - 1, column]
            free[row, column] = True
            delisted[str(close.columns[column])] = sessions[row - 1]
    at_close &= np.isfinite(targets) & ~free
    return Schedule(targets, fill_prices, valuation, free, sessions, weights.index[~fillable], skipped, delisted, at_close)


def simulate(
    weights: pd.DataFrame,
    close: pd.DataFrame,
    open_: pd.DataFrame | None = None,
    *,
    fill: str = "next-open",
    cost_bps: float = 0.0,
    slippage_bps: float = 0.0,
    capital: float = 100_000.0,
    start: pd.Timestamp | None = None,
) -> SimulationResult:
    """Simulate target weights (decision dates x tickers) over sessions x tickers prices.

    The loop runs `rebalance`, the session step paper accounts run, on the sessions that fill
    orders only; positions, cash and the marks between them are filled in with array operations."""
    schedule = fill_schedule(weights, open_, close, fill, start)
    sessions, tickers = schedule.sessions, tuple(close.columns)
    marks = schedule.marks
    shares_at = np.full(marks.shape, np.nan)
    cash_at = np.full(len(sessions), np.nan)
    shares, cash = np.zeros(len(tickers)), float(capital)
    records: list[tuple[int, int, str, float, float, float, str]] = []  # row, column, side, shares, price, fees, note
    columns = {ticker: column for column, ticker in enumerate(tickers)}
    for row in np.flatnonzero(np.isfinite(schedule.targets).any(axis=1)):
        targets, free = schedule.targets[row], schedule.free[row]
        prices = np.where(np.isfinite(targets), schedule.fill_prices[row], np.nan)
        # Close-outs of tickers whose data ended go first, free of costs (they sell at the value
        # they are marked at, so the value the other orders are sized on does not change).
        for part, fee, slip, note in ((free, 0.0, 0.0, DELISTED), (~free, cost_bps, slippage_bps, "")):
            if not np.isfinite(targets[part]).any():
                continue
            shares, cash, fills = rebalance(
                tickers, shares, cash, np.where(part, targets, np.nan), np.where(part, prices, np.nan), marks[row],
                cost_bps=fee, slippage_bps=slip,
            )
            records += [(row, columns[f.ticker], f.side, f.shares, f.price, f.fees, note) for f in fills]
        shares_at[row], cash_at[row] = shares, cash
    shares_at[0] = np.where(np.isnan(shares_at[0]), 0.0, shares_at[0])
    cash_at[0] = capital if np.isnan(cash_at[0]) else cash_at[0]
    positions = pd.DataFrame(shares_at, index=sessions, columns=close.columns).ffill()
    held_cash = pd.Series(cash_at, index=sessions).ffill()
    values = positions.to_numpy() * marks
    equity = (held_cash + values.sum(axis=1)).rename("equity")
    ruined = None
    broke = np.flatnonzero(equity.to_numpy() <= 0)
    if broke.size:  # ruin: everything is closed at that close, and nothing trades again
        row = int(broke[0])
        ruined = sessions[row]
        held = positions.iloc[row].to_numpy()
        records = [record for record in records if record[0] <= row]
        records += [(row, column, "sell" if held[column] > 0 else "buy", abs(float(held[column])), float(marks[row, column]), 0.0, RUINED)
                    for column in np.flatnonzero(held)]
        positions.iloc[row:] = 0.0
        values[row:] = 0.0
        equity.iloc[row:] = 0.0
    with np.errstate(invalid="ignore", divide="ignore"):
        exposure = (pd.Series(np.abs(values).sum(axis=1), index=sessions) / equity).fillna(0.0)
    trades = _trades(records, sessions, close.columns, schedule.at_close)
    return SimulationResult(
        equity=equity,
        positions=positions,
        trades=trades,
        gross_exposure=exposure.rename("gross_exposure"),
        unfilled=schedule.unfilled,
        skipped=schedule.skipped,
        delisted=schedule.delisted,
        filled_at_close=trades.loc[trades["note"] == NO_OPEN, ["date", "ticker"]].reset_index(drop=True),
        ruined=ruined,
        capital=float(capital),
    )


def _trades(records: list[tuple], sessions: pd.DatetimeIndex, tickers: pd.Index, at_close: np.ndarray) -> pd.DataFrame:
    """One row per fill: a delisting close-out is dated the ticker's last session (it sells at that
    close); a next-open fill over an empty open says so."""
    table = pd.DataFrame(records, columns=["row", "column", "side", "shares", "price", "fees", "note"])
    row, column = table["row"].to_numpy(dtype=int), table["column"].to_numpy(dtype=int)
    shares, price, note = table["shares"].to_numpy(dtype=float), table["price"].to_numpy(dtype=float), table["note"].to_numpy(dtype=object)
    closed_out = note == DELISTED
    return pd.DataFrame(
        {
            "date": sessions[row - closed_out.astype(int)],
            "ticker": np.asarray(tickers)[column],
            "side": table["side"].to_numpy(dtype=object),
            "shares": shares,
            "price": price,
            "value": shares * price,
            "fees": table["fees"].to_numpy(dtype=float),
            "note": np.where((note == "") & at_close[row, column], NO_OPEN, note),
        }
    )


@dataclass(frozen=True)
class Fill:
    ticker: str
    side: str  # buy or sell
    shares: float  # > 0
    price: float  # after slippage
    fees: float

    @property
    def value(self) -> float:
        return self.shares * self.price


def rebalance(
    tickers: tuple[str, ...],
    shares: np.ndarray,
    cash: float,
    targets: np.ndarray,
    prices: np.ndarray,
    marks: np.ndarray,
    *,
    cost_bps: float = 0.0,
    slippage_bps: float = 0.0,
) -> tuple[np.ndarray, float, list[Fill]]:
    """One session's fills: the step `simulate` loops over and paper accounts run night by night.

    `targets` are target weights (NaN: no order), `prices` the fill prices (NaN: none, the order
    is skipped), `marks` the last known closes that value tickers without a fill price. Sizing uses
    cash plus positions at those prices; sells go first (orders sorted by the value they change),
    buys are capped by the cash there is. Returns the new shares, cash and fills."""
    fee, slip = cost_bps / 1e4, slippage_bps / 1e4
    shares = np.array(shares, dtype=float)
    priced = np.isfinite(prices)
    ordered = priced & np.isfinite(targets)
    valued_at = np.where(priced, prices, marks)
    value = cash + float(np.sum(np.where(shares != 0, shares * valued_at, 0.0)))
    safe_prices = np.where(priced, prices, 1.0)
    wanted = np.where(ordered, np.nan_to_num(targets) * value / safe_prices - shares, 0.0)
    change = np.where(ordered, np.nan_to_num(targets) * value - shares * safe_prices, 0.0)
    fills = []
    for column in np.argsort(change, kind="stable"):
        delta = wanted[column]
        if abs(delta) <= 1e-12:
            continue
        price = float(prices[column])
        if delta > 0:
            paid = price * (1 + slip)
            cost = delta * paid * (1 + fee)
            if cost > cash:
                delta, cost = cash / (paid * (1 + fee)), cash
            cash -= cost
            fills.append(Fill(tickers[column], "buy", float(delta), paid, float(delta * paid * fee)))
        else:
            received = price * (1 - slip)
            cash += -delta * received * (1 - fee)
            fills.append(Fill(tickers[column], "sell", float(-delta), received, float(-delta * received * fee)))
        shares[column] += delta
    return shares, cash, fills
