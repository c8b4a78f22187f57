"""Target weights -> orders -> fills -> equity, with vectorbt underneath.

Convention (the tests hold a plain numpy implementation of it):

* A row of `weights` dated `d` is a rebalance decided after the close of session `d`: every
  ticker's position is set to that fraction of portfolio value (negative = short; a ticker missing
  from the row targets 0). Sessions without a row hold what they have.
* It fills at the next session: at its open (`next-open`) or close (`next-close`). The portfolio
  value used for sizing is cash plus positions marked at those fill prices.
* Sells execute before buys; a buy is limited to the cash available (no leverage beyond what short
  sales bring in). Fractional shares.
* Commission is `cost_bps` of traded value; slippage moves the fill price by `slippage_bps`
  against the trader.
* Equity is cash plus positions marked at each session's close.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tradesim.config import FILL_MODES


@dataclass(frozen=True)
class SimulationResult:
    equity: pd.Series  # portfolio value at each session's close, from the first decision date
    positions: pd.DataFrame  # shares held at each close
    trades: pd.DataFrame  # one row per fill: date, ticker, side, shares, price, value, fees
    gross_exposure: pd.Series  # sum of |position value| / equity at each close
    unfilled: pd.DatetimeIndex  # decisions with no next session to fill at (the newest ones)

    @property
    def returns(self) -> pd.Series:
        return self.equity.pct_change().iloc[1:]


def fill_schedule(
    weights: pd.DataFrame,
    open_: pd.DataFrame | None,
    close: pd.DataFrame,
    fill: str,
    start: pd.Timestamp | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, pd.DatetimeIndex, pd.DatetimeIndex]:
    """Place each decision's targets on its fill session.

    Returns (targets, fill prices, valuation closes, sessions, unfilled decisions), all arrays
    sessions x tickers from `start` (default: the first decision). Targets are NaN where no order
    is sent.
    """
    if fill not in FILL_MODES:
        raise ValueError(f"fill must be one of {FILL_MODES}, got {fill!r}")
    sessions_all = close.index
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
    sessions = sessions_all[first:]
    close_values = close.to_numpy(dtype=float)[first:]
    valuation = pd.DataFrame(close_values).ffill().to_numpy()
    if fill == "next-open":
        if open_ is None:
            raise ValueError("next-open fills need open prices")
        open_values = open_.reindex(index=close.index, columns=close.columns).to_numpy(dtype=float)[first:]
        fill_prices = np.where(np.isfinite(open_values), open_values, close_values)
    else:
        fill_prices = close_values.copy()

    fill_rows = decision_positions - first + 1
    fillable = fill_rows < len(sessions)
    targets = np.full(close_values.shape, np.nan)
    targets[fill_rows[fillable]] = weights.to_numpy(dtype=float)[fillable]
    unpriced = np.isfinite(targets) & (targets != 0) & ~np.isfinite(fill_prices)
    if unpriced.any():
        row, col = np.argwhere(unpriced)[0]
        raise ValueError(
            f"weight {targets[row, col]:g} on {close.columns[col]} fills on {sessions[row].date()}, "
            "where it has no price"
        )
    return targets, fill_prices, valuation, sessions, weights.index[~fillable]


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
    """Simulate target weights (decision dates x tickers) over sessions x tickers prices."""
    import vectorbt as vbt

    targets, fill_prices, valuation, sessions, unfilled = fill_schedule(weights, open_, close, fill, start)
    tickers = close.columns
    # Leading sessions before a ticker's first price: value with any finite number (positions are 0).
    marks = np.where(np.isfinite(valuation), valuation, 1.0)
    portfolio = vbt.Portfolio.from_orders(
        close=pd.DataFrame(marks, index=sessions, columns=tickers),
        size=targets,
        size_type="targetpercent",
        price=fill_prices,
        direction="both",
        fees=cost_bps / 1e4,
        slippage=slippage_bps / 1e4,
        init_cash=capital,
        cash_sharing=True,
        group_by=True,
        call_seq="auto",
        freq="1D",
    )
    equity = portfolio.value().rename("equity")
    positions = portfolio.assets()
    exposure = (positions.abs() * marks).sum(axis=1) / equity
    return SimulationResult(
        equity=equity,
        positions=positions,
        trades=_trades(portfolio.orders.values, sessions, tickers),
        gross_exposure=exposure.rename("gross_exposure"),
        unfilled=unfilled,
    )


def _trades(records: np.ndarray, sessions: pd.DatetimeIndex, tickers: pd.Index) -> pd.DataFrame:
    shares = records["size"]
    price = records["price"]
    return pd.DataFrame(
        {
            "date": sessions[records["idx"]],
            "ticker": np.asarray(tickers)[records["col"]],
            "side": np.where(records["side"] == 0, "buy", "sell"),
            "shares": shares,
            "price": price,
            "value": shares * price,
            "fees": records["fees"],
        }
    )
