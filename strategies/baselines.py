"""Baselines every learned strategy is compared against, and a way to backtest one's own signals."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.market.data import CARRIED_BARS, MarketView
from tradesim.market.prices import parse_dates
from tradesim.market.tables import line_number, match_columns, read_table
from tradesim.policies import all_in_all_out, rebalance_dates, top_k
from tradesim.strategy import Decision, Settings, Strategy, setting


class BuyAndHold(Strategy):
    name = "buy-and-hold"
    summary = "Buy equal weights of the tickers at the start of the test period and hold them."

    def decision_dates(self, sessions: pd.DatetimeIndex) -> pd.DatetimeIndex:
        return sessions[:1]

    def decide(self, view: MarketView) -> Decision:
        priced = [t for t in self.tickers if np.isfinite(view.close[t].iloc[-1])]
        weights = {t: (1.0 / len(priced) if t in priced else 0.0) for t in self.tickers}
        return Decision(weights, {t: {"priced": t in priced} for t in self.tickers})


@dataclass(frozen=True)
class MomentumSettings(Settings):
    """The settings of strategy Momentum."""

    lookback: int = setting(20, "sessions in the trailing return", minimum=1)
    top_k: int = setting(1, "tickers held when several are given", minimum=1)
    rebalance_every: int = setting(1, "sessions between rebalances", minimum=1)
    short: bool = setting(False, "All-in All-out: go short (-1) instead of flat when the return is negative")


class Momentum(Strategy):
    name = "momentum"
    summary = (
        "Sign of the trailing N-session return: All-in All-out for one ticker, "
        "top-K by trailing return for several."
    )
    Settings = MomentumSettings

    def validate(self) -> None:
        if len(self.tickers) > 1 and self.settings.top_k > len(self.tickers):
            raise TradesimError(f"--top-k {self.settings.top_k}: more than the {len(self.tickers)} tickers given")

    def decision_dates(self, sessions: pd.DatetimeIndex) -> pd.DatetimeIndex:
        return rebalance_dates(sessions, self.settings.rebalance_every)

    @property
    def horizon(self) -> int:
        return self.settings.rebalance_every

    def trailing_returns(self, view: MarketView) -> pd.Series:
        """close[d] / close[d - lookback] - 1 over each ticker's own sessions (a missing bar on d carried
        over from the session before); NaN without enough history."""
        lookback = self.settings.lookback
        closes = view.close[list(self.tickers)].to_numpy()
        returns = np.full(len(self.tickers), np.nan)
        for column in range(closes.shape[1]):
            series = closes[:, column]
            if not np.isfinite(series[-1 - CARRIED_BARS :]).any():  # no bar today, nor one carried over
                continue
            known = series[np.isfinite(series)]
            if len(known) > lookback:
                returns[column] = known[-1] / known[-1 - lookback] - 1
        return pd.Series(returns, index=list(self.tickers))

    def decide(self, view: MarketView) -> Decision:
        scores = self.trailing_returns(view)
        if len(self.tickers) == 1:
            ticker = self.tickers[0]
            score = scores[ticker]
            rise = bool(np.isfinite(score) and score > 0)
            weight = all_in_all_out(rise, short=self.settings.short) if np.isfinite(score) else 0.0
            log = {"trailing_return": _json_float(score), "predicted": "rise" if rise else ("fall" if np.isfinite(score) else None)}
            return Decision({ticker: weight}, {ticker: log}, predictions={ticker: rise} if np.isfinite(score) else None)
        weights = top_k(scores, self.settings.top_k)
        ranks = scores.rank(ascending=False, method="first").to_dict()
        values = scores.to_dict()
        return Decision(
            weights.to_dict(),
            {t: {"trailing_return": _json_float(values[t]), "rank": _json_float(ranks[t])} for t in self.tickers},
            scores=scores.dropna().to_dict(),
        )


@dataclass(frozen=True)
class SignalsSettings(Settings):
    """The settings of strategy Signals."""

    signals: str | None = setting(None, "CSV or Parquet file with columns date,ticker,weight")


class Signals(Strategy):
    name = "signals"
    summary = "Backtest your own signals file (columns date,ticker,weight; weight decided at the close of date)."
    Settings = SignalsSettings

    def validate(self) -> None:
        path = self.settings.signals
        if path is None:
            raise TradesimError("--signals: strategy signals needs a file (columns date,ticker,weight)")
        self.table = load_signals(Path(path), self.tickers)

    def decision_dates(self, sessions: pd.DatetimeIndex) -> pd.DatetimeIndex:
        dates = self.table.index
        inside = dates[(dates >= sessions[0]) & (dates <= sessions[-1])]
        off_calendar = inside[~inside.isin(sessions)]
        if len(off_calendar):
            raise TradesimError(
                f"--signals {self.settings.signals}: {off_calendar[0].date()} is not a trading session of the data"
            )
        return inside

    def decide(self, view: MarketView) -> Decision:
        row = self.table.loc[view.date]
        return Decision({t: float(row[t]) for t in self.tickers}, {t: {"signal": float(row[t])} for t in self.tickers})


def load_signals(path: Path, tickers: tuple[str, ...]) -> pd.DataFrame:
    """A signals file as decision dates x tickers (absent pairs are 0), checked line by line."""
    if not path.is_file():
        raise TradesimError(f"--signals {path}: no such file")
    table = read_table(path)
    columns = match_columns(table, {"date": ("date", "timestamp"), "ticker": ("ticker", "symbol"), "weight": ("weight",)})
    for required in ("date", "ticker", "weight"):
        if required not in columns:
            raise TradesimError(f"--signals {path}: missing required column {required!r} (expected date,ticker,weight)")
    positions = np.arange(len(table))
    dates = parse_dates(table[columns["date"]], str(path), positions)
    names = table[columns["ticker"]].astype("string").str.strip().str.upper()
    weights = pd.to_numeric(table[columns["weight"]], errors="coerce").to_numpy(dtype=float)
    for row in range(len(table)):
        if names.iloc[row] not in tickers:
            raise TradesimError(
                f"--signals {path}, line {line_number(row)}: ticker {names.iloc[row]} is not among the tickers "
                f"of the run ({', '.join(tickers)})"
            )
        if not np.isfinite(weights[row]) or abs(weights[row]) > 1:
            raise TradesimError(
                f"--signals {path}, line {line_number(row)}: weight {table[columns['weight']].iloc[row]!r} "
                "is not a number between -1 and 1"
            )
    long = pd.DataFrame({"date": dates, "ticker": names.to_numpy(), "weight": weights})
    duplicated = long.duplicated(["date", "ticker"]).to_numpy()
    if duplicated.any():
        row = int(np.flatnonzero(duplicated)[0])
        raise TradesimError(f"--signals {path}, line {line_number(row)}: a second weight for {names.iloc[row]} on {dates[row].date()}")
    wide = long.pivot(index="date", columns="ticker", values="weight").reindex(columns=list(tickers)).fillna(0.0)
    long_side = wide.clip(lower=0).sum(axis=1)
    if (long_side > 1 + 1e-9).any():
        day = long_side.index[long_side > 1 + 1e-9][0]
        raise TradesimError(f"--signals {path}: long weights on {day.date()} add up to {long_side[day]:g}, more than 1")
    return wide.sort_index()


def _json_float(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None
