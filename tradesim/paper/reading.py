"""Reading a paper account without changing it: where accounts live, the ledger's equity, orders,
side tables and status, a full re-verification, the backtest it should equal, and
`PaperAccount`, the ledger as pandas objects."""

from __future__ import annotations

import dataclasses
import fcntl
import json
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tradesim.backtesting import run_backtest
from tradesim.config import RunConfig, tradesim_home
from tradesim.errors import TradesimError
from tradesim.paper.calendar import calendar, close_time, due_sessions, parse_now
from tradesim.paper.ledger import BOOKS, LEDGER, Ledger, has_table
from tradesim.plugins import get_strategy
from tradesim.runs import decision_frame


RUNNING = "running.json"
OUTPUTS = "outputs.json"  # the session orders.csv and report.html were written for
LOCK = "lock"


def accounts_home(home: Path | None = None) -> Path:
    return (home or tradesim_home()) / "paper"


def account_dir(name: str, home: Path | None = None) -> Path:
    if not name or "/" in name or name.startswith("."):
        raise TradesimError(f"paper account name {name!r}: expected a plain name like msft-llmoe")
    return accounts_home(home) / name


def config_of(meta: dict[str, Any]) -> RunConfig:
    values = dict(meta["config"])
    return RunConfig(**{**values, "tickers": tuple(values["tickers"])})


def is_locked(directory: Path) -> bool:
    if not (directory / LOCK).exists():
        return False
    with open(directory / LOCK, "r") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def side_table(ledger: Ledger, name: str) -> pd.DataFrame:
    """One side table of the account (e.g. `rankings`), every session's rows, dated."""
    rows = ledger.query("SELECT session, row FROM side_rows WHERE name = ? ORDER BY session, position", (name,))
    return pd.DataFrame([{"date": session, **json.loads(row)} for session, row in rows])


# ---------------------------------------------------------------------- reading an account
def pending_orders(ledger: Ledger) -> pd.DataFrame:
    """The account's orders for the session after the last processed one, with the reason for each."""
    last = ledger.last_session()
    rows = ledger.query(
        "SELECT o.id, o.fill_session, o.ticker, o.target, o.reason FROM orders o WHERE o.book = 'account' AND o.decided = ? ORDER BY o.ticker",
        (last,),
    ) if last else []
    frame = pd.DataFrame(rows, columns=["id", "fill_session", "ticker", "target_weight", "reason"])
    if last:
        held = dict(ledger.query("SELECT ticker, shares FROM positions WHERE session = ? AND book = 'account'", (last,)))
        frame["shares_now"] = frame["ticker"].map(held).astype(float)
    return frame


def equity_frame(ledger: Ledger) -> pd.DataFrame:
    rows = ledger.query("SELECT session, equity, benchmark_equity, cash, late, epoch FROM sessions ORDER BY session")
    frame = pd.DataFrame(rows, columns=["date", "equity", "benchmark", "cash", "late", "epoch"])
    frame["date"] = pd.to_datetime(frame["date"])
    return frame.set_index("date")


def outputs_current(ledger: Ledger) -> bool:
    """Whether orders.csv and report.html were written for the newest session."""
    try:
        return json.loads((ledger.directory / OUTPUTS).read_text())["session"] == ledger.last_session()
    except (OSError, ValueError, KeyError):
        return ledger.last_session() is None


def backtest_equity(ledger: Ledger) -> pd.Series:
    """`tradesim backtest` of the account's sessions with its fitted state: its equity curve."""
    meta = ledger.meta()
    config = dataclasses.replace(config_of(meta), fill=meta["fill"], train_end=meta["inception"], end=ledger.last_session())
    result = run_backtest(
        config, get_strategy(config.strategy), progress=False, state=ledger.fitted(), record_trial=False, fold_states=ledger.refits()
    )
    return result.simulation.equity


def is_broker_account(ledger: Ledger) -> bool:
    from tradesim.paper.orders import is_broker

    return is_broker(ledger.meta())


def fill_comparison(ledger: Ledger) -> pd.DataFrame:
    """Every broker fill beside what the simulator would have filled: the session's open as
    printed, and that open moved by the account's slippage setting (the simulator's price).
    `slippage_bps` is the broker's price against the open, positive when it cost the account;
    `cost_vs_open` and `cost_vs_simulated` are that difference in money (fees included)."""
    config = ledger.meta()["config"]
    rows = ledger.query(
        "SELECT f.session, f.ticker, f.side, f.shares, f.price, f.fees, b.raw_open, f.order_id FROM fills f "
        "JOIN broker_orders o ON o.client_id = f.order_id LEFT JOIN bars b ON b.session = f.session AND b.ticker = f.ticker "
        "WHERE f.book = 'account' ORDER BY f.session, f.rowid"
    ) if has_table(ledger.connection, "broker_orders") else []
    frame = pd.DataFrame(rows, columns=["date", "ticker", "side", "shares", "price", "fees", "open", "client_id"])
    sign = np.where(frame["side"] == "buy", 1.0, -1.0)
    frame["simulated"] = frame["open"] * (1 + sign * config["slippage_bps"] / 1e4)
    frame["slippage_bps"] = sign * (frame["price"] / frame["open"] - 1) * 1e4
    frame["cost_vs_open"] = sign * (frame["price"] - frame["open"]) * frame["shares"] + frame["fees"]
    frame["cost_vs_simulated"] = sign * (frame["price"] - frame["simulated"]) * frame["shares"] + frame["fees"] - frame["simulated"] * frame["shares"] * config["cost_bps"] / 1e4
    frame["date"] = pd.to_datetime(frame["date"])
    return frame[["date", "ticker", "side", "shares", "price", "open", "simulated", "slippage_bps", "cost_vs_open", "cost_vs_simulated", "fees", "client_id"]]


def fill_totals(comparison: pd.DataFrame) -> dict[str, float]:
    """In total: the value-weighted slippage against the open and the costs; per trade: the mean
    slippage with its 95% t-interval (how sure the broker's typical fill is, given the trades)."""
    from scipy import stats

    traded = float((comparison["shares"] * comparison["open"]).sum())
    per_trade = comparison["slippage_bps"].to_numpy(dtype=float)
    mean = float(per_trade.mean()) if len(per_trade) else float("nan")
    half = float(stats.t.ppf(0.975, len(per_trade) - 1) * per_trade.std(ddof=1) / np.sqrt(len(per_trade))) if len(per_trade) > 1 else float("nan")
    return {
        "fills": len(comparison),
        "traded_at_open": traded,
        "slippage_bps": float(comparison["cost_vs_open"].sum() / traded * 1e4) if traded else float("nan"),
        "slippage_bps_per_trade": mean,
        "slippage_bps_per_trade_interval": (mean - half, mean + half),
        "cost_vs_open": float(comparison["cost_vs_open"].sum()),
        "cost_vs_simulated": float(comparison["cost_vs_simulated"].sum()),
    }


def tracking_frame(ledger: Ledger, backtest: pd.Series) -> pd.DataFrame:
    """The account's equity against the backtest of the same sessions (the simulator's account),
    from the backtest's first day: the difference in money and in daily returns."""
    account = equity_frame(ledger)["equity"]
    frame = pd.DataFrame({"account": account, "backtest": backtest}).dropna()
    frame["difference"] = frame["account"] - frame["backtest"]
    frame["return_difference"] = frame["account"].pct_change().fillna(0.0) - frame["backtest"].pct_change().fillna(0.0)
    return frame


def tracking_totals(frame: pd.DataFrame) -> dict[str, float]:
    if frame.empty:
        return {"sessions": 0}
    return {
        "sessions": len(frame),
        "difference": float(frame["difference"].iloc[-1]),
        "difference_pct": float(frame["account"].iloc[-1] / frame["backtest"].iloc[-1] - 1) * 100,
        "tracking_error_annualized_pct": float(frame["return_difference"].iloc[1:].std(ddof=1) * np.sqrt(252) * 100) if len(frame) > 2 else float("nan"),
    }


def broker_view(ledger: Ledger) -> dict[str, Any]:
    """The broker's account beside the ledger's: its cash, equity and positions now, and the drift
    (broker minus account, less what a person said is not the account's). Asks the broker."""
    from tradesim.paper.orders import differences, open_broker, outside_positions

    meta = ledger.meta()
    last = ledger.last_session()
    held = dict(ledger.query("SELECT ticker, shares FROM positions WHERE session = ? AND book = 'account'", (last,))) if last else {}
    since = calendar().session_close(pd.Timestamp(last or meta["inception"])) - pd.Timedelta(days=0 if last else 7)
    ours = {client_id for (client_id,) in ledger.query("SELECT client_id FROM broker_orders")}
    outside = outside_positions(ledger)
    try:
        broker = open_broker(meta["name"], meta)
        account, positions, clock, orders = broker.account(), broker.positions(), broker.clock(), broker.orders_since(since)
    except TradesimError as error:
        return {"broker": meta["broker"], "problem": str(error)}
    return {
        "broker": meta["broker"],
        "broker_account": meta["broker_account"],
        "order_timing": meta["order_timing"],
        "clock": f"{clock.timestamp.tz_convert('America/New_York'):%Y-%m-%d %H:%M %Z}, market {'open' if clock.is_open else 'closed'}",
        "cash": account.cash,
        "equity": account.equity,
        "positions": positions,
        "drift": differences(positions, outside, held),
        "outside_positions": outside,
        "orders_since_last_session": [{**dataclasses.asdict(order), "this_account": order.client_id in ours} for order in orders],
    }


def broker_orders_of(ledger: Ledger, decided: str | None) -> list[dict[str, Any]]:
    """The broker orders decided on one session (the newest: tonight's), as the ledger has them."""
    from tradesim.paper.orders import broker_orders_frame

    frame = broker_orders_frame(ledger)
    return frame[frame["decided"] == decided].to_dict("records") if decided else []


def open_account(name: str, home: Path | None = None) -> Ledger:
    """The ledger of an account, for reading (nothing is written: works on a read-only disk)."""
    return Ledger.open(account_dir(name, home), readonly=True)


def verify_account(ledger: Ledger) -> list[str]:
    """Recompute positions, cash and equity of every session from the capital, the fills and the
    corporate actions, and every session's hash chain. Returns the problems (empty: verified)."""
    problems = ledger.verify_chain()
    meta = ledger.meta()
    tickers = tuple(meta["config"]["tickers"])
    index = {t: i for i, t in enumerate(tickers)}
    shares = {book: np.zeros(len(tickers)) for book in BOOKS}
    cash = dict.fromkeys(BOOKS, float(meta["capital"]))
    for session, account_cash, account_equity, benchmark_cash, benchmark_equity in ledger.query(
        "SELECT session, cash, equity, benchmark_cash, benchmark_equity FROM sessions ORDER BY session"
    ):
        for book, ticker, kind, step, dividend, before, after, credited in ledger.query(
            "SELECT book, ticker, kind, step, dividend, shares_before, shares_after, cash FROM actions WHERE session = ?", (session,)
        ):
            column = index[ticker]
            if not np.isclose(shares[book][column], before, rtol=1e-12, atol=1e-12):
                problems.append(f"{session} {book} {ticker}: {kind} found {before} shares, the fills say {shares[book][column]}")
            expected_after = before if kind == "dividend" and credited else before * step
            if not np.isclose(after, expected_after, rtol=1e-12, atol=1e-12) or not np.isclose(credited, before * dividend if credited else 0.0, rtol=1e-12, atol=1e-9):
                problems.append(f"{session} {book} {ticker}: the {kind} (step {step}) does not account for the shares or cash recorded")
            shares[book][column] = after
            cash[book] += credited
        for book, ticker, side, amount, price, fees in ledger.query("SELECT book, ticker, side, shares, price, fees FROM fills WHERE session = ? ORDER BY rowid", (session,)):
            sign = 1.0 if side == "buy" else -1.0
            shares[book][index[ticker]] += sign * amount
            cash[book] -= sign * amount * price + fees
        adjusted = ledger.query("SELECT book, ticker, shares, cash FROM adjustments WHERE session = ?", (session,)) if has_table(ledger.connection, "adjustments") else []
        for book, ticker, amount, credited in adjusted:  # a broker account made the broker's (cash, accepted drift)
            if amount:
                shares[book][index[ticker]] += amount
            cash[book] += credited
        closes = dict(ledger.query("SELECT ticker, raw_close FROM bars WHERE session = ?", (session,)))
        marks = np.array([closes.get(t, np.nan) for t in tickers])
        recorded = {"account": (account_cash, account_equity), "benchmark": (benchmark_cash, benchmark_equity)}
        for book in BOOKS:
            held = dict(ledger.query("SELECT ticker, shares FROM positions WHERE session = ? AND book = ?", (session, book)))
            stored = np.array([held.get(t, 0.0) for t in tickers])
            if not np.allclose(stored, shares[book], rtol=1e-9, atol=1e-9):
                problems.append(f"{session} {book}: positions differ from capital + fills + corporate actions")
            book_cash, book_equity = recorded[book]
            if not np.isclose(book_cash, cash[book], rtol=1e-9, atol=1e-6):
                problems.append(f"{session} {book}: cash {book_cash:.6f} but capital + fills + dividends give {cash[book]:.6f}")
            if not np.isclose(book_equity, cash[book] + np.sum(shares[book] * marks), rtol=1e-9, atol=1e-6):
                problems.append(f"{session} {book}: equity {book_equity:.6f} is not cash + positions at the closes")
        if len(problems) > 20:
            break
    return problems


def status_of(name: str, now: pd.Timestamp, home: Path | None = None) -> dict[str, Any]:
    directory = account_dir(name, home)
    ledger = open_account(name, home)
    try:
        meta = ledger.meta()
        last = ledger.last_session()
        due, first = due_sessions(ledger, meta, now)
        row = ledger.session_row(last) if last else None
        epoch, fingerprint, _ = ledger.epoch()
        positions = ledger.query("SELECT ticker, shares FROM positions WHERE session = ? AND book = 'account' AND shares != 0 ORDER BY ticker", (last,)) if last else []
        closes = dict(ledger.query("SELECT ticker, raw_close FROM bars WHERE session = ?", (last,))) if last else {}
        return {
            "account": name,
            "directory": str(directory),
            "strategy": meta["config"]["strategy"],
            "tickers": meta["config"]["tickers"],
            "inception": meta["inception"],
            "fill": meta["fill"],
            "dividends": meta["dividends"],
            "last_processed": last,
            "next_due": f"{first.date()} (after its close at {close_time(first)})",
            "sessions_due_now": len(due),
            "capital": meta["capital"],
            "cash": row["cash"] if row else meta["capital"],
            "equity": row["equity"] if row else meta["capital"],
            "benchmark_equity": row["benchmark_equity"] if row else meta["capital"],
            "positions": [{"ticker": t, "shares": s, "value": s * closes[t]} for t, s in positions],
            "pending_orders": pending_orders(ledger).to_dict("records"),
            "epoch": epoch,
            "fingerprint": fingerprint,
            "data_events": [dict(zip(("id", "session", "ticker", "kind", "detail", "status", "reason"), e)) for e in ledger.query("SELECT * FROM events ORDER BY session, id")],
            "broker": broker_view(ledger) if is_broker_account(ledger) else None,
            "broker_orders": broker_orders_of(ledger, last),
            "crashed_run": json.loads((directory / RUNNING).read_text()) if (directory / RUNNING).exists() and not is_locked(directory) else None,
        }
    finally:
        ledger.close()


def list_accounts(home: Path | None = None) -> list[dict[str, Any]]:
    found = []
    root = accounts_home(home)
    for directory in sorted(root.iterdir()) if root.exists() else []:
        if not (directory / LEDGER).exists() or directory.name.startswith("."):
            continue
        try:
            ledger = Ledger.open(directory, readonly=True)
        except TradesimError as error:
            found.append({"account": directory.name, "problem": str(error)})
            continue
        try:
            meta, last = ledger.meta(), ledger.last_session()
            row = ledger.session_row(last) if last else None
            found.append({
                "account": directory.name, "strategy": meta["config"]["strategy"], "tickers": ",".join(meta["config"]["tickers"]),
                "last_processed": last, "equity": row["equity"] if row else meta["capital"],
            })
        finally:
            ledger.close()
    return found


class PaperAccount:
    """A paper account's ledger as pandas objects (read when asked for; the ledger is not changed)."""

    def __init__(self, name: str, home: str | Path | None = None):
        self.name = name
        self.directory = account_dir(name, None if home is None else Path(home))
        self._read(lambda ledger: None)  # refuses a missing or damaged ledger now, with its message

    def __repr__(self) -> str:
        return f"<PaperAccount {self.name} at {self.directory}>"

    def _read(self, read):
        ledger = Ledger.open(self.directory, readonly=True)
        try:
            return read(ledger)
        finally:
            ledger.close()

    @property
    def config(self) -> dict[str, Any]:
        return self._read(lambda ledger: ledger.meta())["config"]

    @property
    def equity(self) -> pd.DataFrame:
        """Per processed session: the account's equity (`strategy`), the benchmark's, cash, whether
        the decision was late, and the epoch."""
        return self._read(equity_frame).rename(columns={"equity": "strategy"})

    @property
    def returns(self) -> pd.DataFrame:
        return self.equity[["strategy", "benchmark"]].pct_change().fillna(0.0)

    @property
    def fills(self) -> pd.DataFrame:
        rows = self._read(lambda ledger: ledger.query("SELECT session, book, ticker, side, shares, price, fees, order_id FROM fills ORDER BY session, rowid"))
        frame = pd.DataFrame(rows, columns=["date", "book", "ticker", "side", "shares", "price", "fees", "order_id"])
        frame["date"] = pd.to_datetime(frame["date"])
        return frame

    @property
    def orders(self) -> pd.DataFrame:
        """Tomorrow's orders, with the reason for each (what `tradesim paper orders` prints)."""
        return self._read(pending_orders)

    @property
    def positions(self) -> pd.DataFrame:
        """The account's shares (as printed) after each session, sessions x tickers."""
        rows = self._read(lambda ledger: ledger.query("SELECT session, ticker, shares FROM positions WHERE book = 'account'"))
        frame = pd.DataFrame(rows, columns=["date", "ticker", "shares"]).pivot(index="date", columns="ticker", values="shares")
        frame.index = pd.DatetimeIndex(frame.index, name="date")
        return frame

    @property
    def decisions(self) -> pd.DataFrame:
        """One row per decision and ticker: weight, action and the strategy's log, flattened."""
        rows = self._read(lambda ledger: ledger.query("SELECT session, ticker, weight, action, log FROM decisions ORDER BY session, ticker"))
        return decision_frame([{"date": s, "ticker": t, **json.loads(log), "weight": w, "action": a} for s, t, w, a, log in rows])

    def table(self, name: str) -> pd.DataFrame:
        """A side table kept per session (TradExpert's `rankings`, `comparisons`, `reports`)."""
        frame = self._read(lambda ledger: side_table(ledger, name))
        if frame.empty:
            raise TradesimError(f"paper account {self.name}: no side table {name!r}")
        frame["date"] = pd.to_datetime(frame["date"])
        return frame

    def status(self, now: str | None = None) -> dict[str, Any]:
        """What `tradesim paper status` shows, as a dictionary."""
        return status_of(self.name, parse_now(now), self.directory.parent.parent)

    @property
    def broker_orders(self) -> pd.DataFrame:
        """A broker account's orders: what was decided and sent (client id, shares, time in force),
        what the broker did (state, filled shares, average price) and why (rejections, cancels)."""
        from tradesim.paper.orders import broker_orders_frame

        return self._read(broker_orders_frame)

    @property
    def fill_comparison(self) -> pd.DataFrame:
        """Every broker fill beside what the simulator would have filled (`fill_comparison`)."""
        return self._read(fill_comparison)

    @property
    def tracking(self) -> pd.DataFrame:
        """The account's equity against the backtest of the same sessions, per session."""
        return self._read(lambda ledger: tracking_frame(ledger, self.backtest))

    @cached_property
    def backtest(self) -> pd.Series:
        """`tradesim backtest` of the account's sessions with its fitted state: the equity curve the
        account should equal (it runs the backtest once, when first asked for)."""
        return self._read(backtest_equity).rename("backtest")


def open_paper(name: str, home: str | Path | None = None) -> PaperAccount:
    """A paper account (`$TRADESIM_HOME/paper/NAME`, or under `home`) as a `PaperAccount`."""
    return PaperAccount(name, home)
