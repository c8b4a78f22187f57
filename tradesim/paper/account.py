"""Paper accounts: a strategy fitted once, then run night after night on the sessions that closed.

A night, for each closed session after the last one processed (XNYS calendar, oldest first, at
most `max_catch_up` per run): load the bars up to it from the account's source and check them
against what the account already used; apply the session's splits (shares multiply) and
dividends (reinvested at the ex-date reference price, as adjusted prices assume, or credited as
cash); fill the orders pending for it at its open or close with costs (`tradesim.engine.rebalance`,
the convention the backtest engine follows); mark at the close; decide for the next session
(language-model answers through the cache); commit, all in one transaction. Prices are kept as
printed, so the account's shares are real shares; the backtest works in adjusted prices, and the
two agree because the split/dividend steps are the same ones the adjusted prices are built from.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pandas as pd

from tradesim.backtesting import check_weights, order_action, seeded_global_random
from tradesim.config import RunConfig
from tradesim.engine import fill_prices_of, rebalance
from tradesim.errors import TradesimError
from tradesim.market.data import load_market_data
from tradesim.paper.brokers import BROKERS, ORDER_TIMINGS, connect
from tradesim.paper import orders as broker_night
from tradesim.paper.calendar import CALENDAR, calendar, close_time, due_sessions, last_closed, next_session, session_day
from tradesim.paper.hooks import KILL_ENV, KILL_POINTS, PaperRefusal, PaperRetry, _reached, checkpoint  # noqa: F401 - the night's names
from tradesim.paper.identity import changed_parts, fingerprint_parts
from tradesim.paper.ledger import BOOKS, LEDGER, SESSION_TABLES, Ledger, LedgerCorrupt, fingerprint_of, write_atomically
from tradesim.paper.reading import LOCK, OUTPUTS, RUNNING, account_dir, config_of, outputs_current, pending_orders
from tradesim.paper.report import account_report
from tradesim.plugins import get_strategy
from tradesim.policies import benchmark_targets
from tradesim.strategy import Runtime, Strategy
from tradesim.sweep.folds import fold_of, plan_folds, training_range


DIVIDEND_MODES = ("reinvest", "cash")
DEFAULT_MAX_CATCH_UP = 5
JUMP_LIMIT = 1.5  # a session's adjusted close above 1.5x or below 1/1.5 of the last one is a data event
RESTATE_TOLERANCE = 1e-6  # relative, as the Yahoo cache's: float noise is not a restatement
REASON_KEYS = ("predicted", "router_label", "expert_probability", "probability", "rank", "score", "signal")
PRINTED = ("raw_open", "raw_high", "raw_low", "raw_close", "volume", "adjustment_step")


# A bar still missing after this many closed sessions is a dead feed (exit 2), not a late one (75).
STALE_FEED_SESSIONS = 3


def _strategy(config: RunConfig, fill: str, progress: bool) -> Strategy:
    runtime = Runtime(device=config.device, fill=fill, llm_cache=config.llm_cache, progress=progress)
    return get_strategy(config.strategy)(config.tickers, config.params, config.seed, runtime)


def _load(config: RunConfig, end: pd.Timestamp):
    return load_market_data(config.data, config.tickers, config.start, end, config.news, config.cutoff, config.fundamentals)


# ---------------------------------------------------------------------- init
def init_account(
    name: str,
    config: RunConfig,
    *,
    inception: str | None = None,
    capital: float | None = None,
    dividends: str | None = None,
    now: pd.Timestamp,
    broker: str = "sim",
    order_timing: str | None = None,
    progress: bool = False,
    home: Path | None = None,
) -> dict[str, Any]:
    """Create the account: fit the strategy on everything before the inception session and store
    its fitted state; the first night processes the inception session. With a broker, the
    account's capital is the broker account's cash, and its orders go there."""
    with seeded_global_random(config.seed):
        return _init_account(name, config, inception, capital, dividends, now, broker, order_timing, progress, home)


def _broker_terms(config: RunConfig, capital: float | None, dividends: str | None, broker: str, order_timing: str | None) -> tuple[dict[str, Any], float | None, str, Any]:
    """The meta entries of a broker account (none for `sim`), its capital and dividend mode, and
    the broker (None for `sim`)."""
    if broker not in BROKERS:
        raise TradesimError(f"--broker: expected one of {', '.join(BROKERS)}, got {broker!r}")
    if order_timing is not None and order_timing not in ORDER_TIMINGS:
        raise TradesimError(f"--order-timing: expected one of {', '.join(ORDER_TIMINGS)}, got {order_timing!r}")
    if broker == "sim":
        if order_timing is not None:
            raise TradesimError("--order-timing: only for a broker account (--broker alpaca); the sim broker fills at the config's fill")
        return {}, capital, dividends or "reinvest", None
    if capital is not None:
        raise TradesimError(f"--capital: a {broker} account's capital is the cash the broker account holds; leave --capital out")
    if dividends == "reinvest":
        raise TradesimError(f"--dividends reinvest: a {broker} account is paid dividends in cash, as the broker books them; use --dividends cash")
    if config.fill != "next-open":
        raise TradesimError(f"fill {config.fill}: a {broker} account's orders fill at the next session's open (market-on-open or day orders); use fill next-open")
    connected = connect(broker)
    account = connected.account()
    if not account.number.startswith("PA"):
        raise TradesimError(f"broker {broker}: account {account.number} is not a paper account (paper accounts' numbers start with PA); tradesim trades only paper accounts")
    terms = {"broker": broker, "order_timing": order_timing or "auction", "broker_account": account.number, "account_id": uuid.uuid4().hex}
    return terms, account.cash, "cash", connected


def _check_broker(broker, terms: dict[str, Any], first: pd.Timestamp, tickers: tuple[str, ...]) -> None:
    """The broker trades every ticker (in fractions, for day orders), and its sessions for the
    month from the inception are the XNYS calendar's (the account's nights follow XNYS)."""
    for ticker in tickers:
        asset = broker.asset(ticker)
        if not asset.get("tradable"):
            raise TradesimError(f"broker {terms['broker']}: {ticker} is {'not known' if not asset else 'not tradable'} there")
        if terms["order_timing"] == "day" and not asset["fractionable"]:
            raise TradesimError(f"--order-timing day: {ticker} cannot be traded in fractions at {terms['broker']}; use --order-timing auction")
    end = first + pd.Timedelta(days=31)
    theirs = {day for day, _, _ in broker.calendar(session_day(first), session_day(end))}
    ours = {session_day(day) for day in calendar().sessions_in_range(first, end)}
    if theirs != ours:
        differ = sorted(theirs ^ ours)
        raise TradesimError(f"broker {terms['broker']}: its calendar and {CALENDAR}'s differ on {', '.join(differ[:5])}; the account's nights follow {CALENDAR}")


def _init_account(
    name: str, config: RunConfig, inception: str | None, capital: float | None, dividends: str | None, now: pd.Timestamp,
    broker: str, order_timing: str | None, progress: bool, home: Path | None,
) -> dict[str, Any]:
    directory = account_dir(name, home)
    if directory.exists():
        raise TradesimError(f"paper account {name!r} already exists ({directory}); choose another name")
    if config.llm_cache == "off":
        raise TradesimError("llm_cache off: paper accounts need the language-model cache (a re-run after a crash must reach the same decision)")
    if dividends is not None and dividends not in DIVIDEND_MODES:
        raise TradesimError(f"--dividends: expected one of {', '.join(DIVIDEND_MODES)}, got {dividends!r}")
    terms, capital, dividends, connected = _broker_terms(config, capital, dividends, broker, order_timing)
    closed = last_closed(now)
    if inception is None:
        first = next_session(closed)
    else:
        try:
            first = pd.Timestamp(inception)
        except ValueError:
            raise TradesimError(f"--inception: expected a date like 2024-03-05, got {inception!r}") from None
        if not calendar().is_session(first):
            raise TradesimError(f"--inception {first.date()}: not an {CALENDAR} session (the next one is {calendar().date_to_session(first, 'next').date()})")
    if capital is not None:
        config = dataclasses.replace(config, capital=float(capital))
    if config.capital <= 0:
        raise TradesimError(f"--capital: expected a positive amount, got {config.capital:g}")
    data = _load(config, first - pd.Timedelta(days=1))
    fill = config.fill
    if fill == "next-open" and not data.has_ohlc:
        fill = "next-close"
    if connected is not None:
        _check_broker(connected, terms, first, data.tickers)
    config = dataclasses.replace(config, tickers=data.tickers, fill=fill, end=None, train_end=session_day(first), out=None)
    strategy = _strategy(config, fill, progress)
    config = dataclasses.replace(config, params=strategy.settings.as_dict())
    if strategy.looks_ahead:
        raise TradesimError(f"strategy {strategy.name}: {strategy.look_ahead_reason}; a paper account cannot look ahead")
    if fill == "same-close":
        raise TradesimError("fill same-close: a market-on-close order that treats the close as known cannot be paper-traded; use next-open or next-close")
    if strategy.needs_training:
        if not strategy.fitted_attributes:
            raise TradesimError(f"strategy {strategy.name}: it cannot store its fitted state yet, so it cannot run as a paper account")
        if config.walk_forward:  # fold 0 of the schedule: its window and embargo before the inception session
            window_first, window_last = training_range(len(data.sessions), config.train_window, config.embargo)
            if window_last < 0:
                raise TradesimError(f"--embargo {config.embargo}: leaves no session before the inception to train on")
            strategy.fit(data.sessions_from(window_first).view(data.sessions[window_last]))
        else:
            strategy.fit(data.view(data.sessions[-1]))
    elif config.walk_forward:
        raise TradesimError(f"walk_forward: strategy {strategy.name} learns nothing, so there is nothing to refit")
    blob = strategy.state()
    fitted_sha = hashlib.sha256(blob).hexdigest()
    parts = fingerprint_parts(config, strategy, fitted_sha, dividends)
    meta = {
        "name": name,
        "config": config.to_dict(),
        "capital": config.capital,
        "inception": session_day(first),
        "fill": fill,
        "dividends": dividends,
        "fitted_through": session_day(data.sessions[-1]),
        "notes": list(data.notes) + strategy.notes,
        **terms,
    }
    staging = directory.with_name(f".{name}.init")
    if staging.exists():
        shutil.rmtree(staging)
    ledger = Ledger.create(staging, meta, blob, parts, session_day(first))
    ledger.close()
    os.replace(staging, directory)
    return {**meta, "directory": str(directory), "fingerprint": fingerprint_of(parts)}


# ---------------------------------------------------------------------- a night
@dataclass
class Night:
    """Everything one session adds to the ledger."""

    session: str
    late: bool
    next_session: str
    rows: dict[str, list[tuple]] = field(default_factory=lambda: {k: [] for k in SESSION_TABLES})
    cash: dict[str, float] = field(default_factory=dict)
    equity: dict[str, float] = field(default_factory=dict)
    carried: bytes = b""


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One run at a time: a lock the kernel releases when the process dies."""
    handle = open(directory / LOCK, "a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PaperRetry(f"{directory}: another `tradesim paper run` is processing this account; try later") from None
        yield
    finally:
        handle.close()


class Book:
    """Shares (as printed) and cash of the account or of its benchmark, carried through a night."""

    def __init__(self, name: str, tickers: tuple[str, ...], shares: np.ndarray, cash: float):
        self.name, self.tickers, self.shares, self.cash = name, tickers, shares, cash


def _books(ledger: Ledger, tickers: tuple[str, ...], capital: float, last: str | None) -> dict[str, Book]:
    books = {}
    for book in BOOKS:
        shares = np.zeros(len(tickers))
        cash = capital
        if last is not None:
            held = dict(ledger.query("SELECT ticker, shares FROM positions WHERE session = ? AND book = ?", (last, book)))
            shares = np.array([held.get(t, 0.0) for t in tickers])
            row = ledger.session_row(last)
            cash = row["cash"] if book == "account" else row["benchmark_cash"]
        books[book] = Book(book, tickers, shares, cash)
    return books


def _reason(log: dict[str, Any], previous: float, weight: float) -> str:
    said = ", ".join(f"{key} {log[key]}" for key in REASON_KEYS if log.get(key) is not None)
    return f"target {weight:.0%} (was {previous:.0%})" + (f": {said}" if said else "")


def _order_rows(book: str, decided: str, fill_session: str, tickers, targets: np.ndarray, reasons: list[str]) -> list[tuple]:
    return [(f"{decided}/{book}/{t}", book, decided, fill_session, t, float(w), r) for t, w, r in zip(tickers, targets, reasons)]


def _fill(night: Night, book: Book, orders: list[tuple], prices: np.ndarray, marks: np.ndarray, config: RunConfig) -> None:
    """Fill a book's orders (ledger rows: id, ticker, target) at `prices`."""
    index = {t: i for i, t in enumerate(book.tickers)}
    targets = np.full(len(book.tickers), np.nan)
    ids = {}
    for order_id, ticker, target in orders:
        targets[index[ticker]] = target
        ids[ticker] = order_id
    book.shares, book.cash, fills = rebalance(
        book.tickers, book.shares, book.cash, targets, prices, marks, cost_bps=config.cost_bps, slippage_bps=config.slippage_bps
    )
    night.rows["fills"] += [(ids[f.ticker], night.session, book.name, f.ticker, f.side, f.shares, f.price, f.fees) for f in fills]


def _book_fills(night: Night, book: Book, rows: list[tuple]) -> None:
    """Book a broker's fills (fills rows) into the book."""
    index = {t: i for i, t in enumerate(book.tickers)}
    for row in rows:
        _, _, _, ticker, side, shares, price, fees = row
        sign = 1.0 if side == "buy" else -1.0
        book.shares[index[ticker]] += sign * shares
        book.cash -= sign * shares * price + fees
    night.rows["fills"] += rows


def _apply_adjustments(book: Book, rows: list[tuple]) -> None:
    index = {t: i for i, t in enumerate(book.tickers)}
    for _, _, ticker, _, shares, cash, _ in rows:
        if shares:
            book.shares[index[ticker]] += shares
        book.cash += cash


def _apply_actions(night: Night, book: Book, steps: np.ndarray, previous_close: np.ndarray, splits: set[str], dividends: str) -> None:
    for column in np.flatnonzero(steps != 1.0):
        ticker, step, before = book.tickers[column], float(steps[column]), float(book.shares[column])
        kind = "split" if ticker in splits else "dividend"
        amount = 0.0 if kind == "split" else float(previous_close[column] * (1 - 1 / step))
        credited = 0.0
        if kind == "dividend" and dividends == "cash":
            credited = before * amount
            book.cash += credited
        else:
            book.shares[column] = before * step
        if before != 0.0:
            night.rows["actions"].append((night.session, book.name, ticker, kind, step, amount, before, float(book.shares[column]), credited))


@dataclass
class RunSummary:
    account: str
    processed: list[str]
    late: list[str]
    remaining: int
    next_due: str
    equity: float | None
    benchmark: float | None
    orders: list[dict[str, Any]]
    messages: list[str]
    status: str = "ok"

    def as_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), default=str)


def run_account(
    name: str,
    *,
    now: pd.Timestamp,
    max_catch_up: int = DEFAULT_MAX_CATCH_UP,
    accept_change: str | None = None,
    progress: bool = False,
    home: Path | None = None,
) -> RunSummary:
    directory = account_dir(name, home)
    if not (directory / LEDGER).exists():
        raise TradesimError(f"paper account {name!r}: not found under {directory.parent} (`tradesim paper list` shows the accounts)")
    with locked(directory):
        ledger = Ledger.open(directory)
        try:
            broken = ledger.verify_chain()  # a night builds on the sessions before it: they must be as committed
            if broken:
                raise LedgerCorrupt(f"{directory / LEDGER}: {broken[0]}; it was changed after it was committed (`paper verify` lists the problems)")
            write_atomically(directory / RUNNING, json.dumps({"pid": os.getpid(), "started": str(pd.Timestamp.now(tz="UTC"))}))
            try:
                summary = _run(ledger, name, now, max_catch_up, accept_change, progress)
            except TradesimError:
                (directory / RUNNING).unlink()  # a refusal or a try-later is an ordinary end, not a crash
                raise
            (directory / RUNNING).unlink()
            return summary
        finally:
            ledger.close()


def _check_bars(data, due: pd.DatetimeIndex, source: str) -> tuple[pd.DatetimeIndex, str | None]:
    """The due sessions with every ticker's bar, up to the first one missing (and what is missing)."""
    raw_close = data.arrays["raw_close"]
    for position, session in enumerate(due):
        row = data.sessions.get_indexer([session])[0]
        missing = list(data.tickers) if row < 0 else [t for t, v in zip(data.tickers, raw_close[row]) if not np.isfinite(v)]
        if missing:
            return due[:position], f"{source}: no bar for {', '.join(missing[:5])} on {session.date()} yet (it has closed)"
    return due, None


def _data_events(ledger: Ledger, data, due: pd.DatetimeIndex, inception: pd.Timestamp) -> list[tuple[str, str, str, str, str]]:
    """Restated bars the account already used, unmatched jumps in the due sessions, and bars on
    days that are not sessions: (id, session, ticker, kind, detail)."""
    events = []
    sessions = data.sessions
    extra = sessions[(sessions >= inception) & (sessions <= due[-1]) & ~sessions.isin(calendar().sessions_in_range(inception, due[-1]))]
    for day in extra:
        events.append((f"not-a-session/{day.date()}", session_day(day), "*", "not-a-session", f"the data has a bar on {day.date()}, which is not an {CALENDAR} session"))
    stored = ledger.query(f"SELECT session, ticker, {', '.join(PRINTED)} FROM bars")
    if stored:  # every bar the account used against the source now, all at once
        frame = pd.DataFrame(stored, columns=["session", "ticker", *PRINTED])
        rows = sessions.get_indexer(pd.DatetimeIndex(frame["session"]))
        columns = pd.Index(data.tickers).get_indexer(frame["ticker"])
        found = rows >= 0
        used = frame[list(PRINTED)].to_numpy(dtype=float)
        current = np.full(used.shape, np.nan)
        for position, name in enumerate(PRINTED):
            current[found, position] = data.arrays[name][rows[found], columns[found]]
        same = np.isclose(used, current, rtol=RESTATE_TOLERANCE, atol=0, equal_nan=True)
        for index in np.flatnonzero(~same.all(axis=1)):
            session, ticker = frame["session"].iloc[index], frame["ticker"].iloc[index]
            changed = [f"{name} {v:g} -> {n:g}" for name, v, n, ok in zip(PRINTED, used[index], current[index], same[index]) if not ok]
            events.append((f"restated/{session}/{ticker}", session, ticker, "restated", f"{ticker}'s bar of {session}, already used, changed at the source: {'; '.join(changed)}"))
    close, steps = data.arrays["raw_close"], data.arrays["adjustment_step"]
    for session in due:
        row = sessions.get_loc(session)
        if row == 0:
            continue
        moves = close[row] * steps[row] / close[row - 1]
        for ticker, move, step in zip(data.tickers, moves, steps[row]):
            if np.isfinite(move) and (move > JUMP_LIMIT or move < 1 / JUMP_LIMIT):
                split = f"a split/dividend step of {step:g} leaves" if step != 1 else "no split explains"
                events.append((f"jump/{session.date()}/{ticker}", session_day(session), ticker, "jump", f"{ticker} moved {move - 1:+.1%} on {session.date()} ({split} it)"))
    return events


def _open_events(ledger: Ledger, events: list[tuple]) -> list[tuple]:
    """Record new events and return those not resolved (accepted or ignored) yet."""
    known = dict(ledger.query("SELECT id, status FROM events"))
    new = [e for e in events if e[0] not in known]
    if new:
        with ledger.transaction():
            ledger.insert("events", [(*e, "open", None) for e in new])
    return [e for e in events if known.get(e[0], "open") == "open"]


def _run(ledger: Ledger, name: str, now: pd.Timestamp, max_catch_up: int, accept_change: str | None, progress: bool) -> RunSummary:
    meta = ledger.meta()
    config = config_of(meta)
    broker, messages = None, []
    if broker_night.is_broker(meta):  # what the broker did since the last run, before anything else
        broker_night.check_order_timing(name, meta, now)
        broker = broker_night.open_broker(name, meta)
        messages += broker_night.reconcile(ledger, broker, now)
    due, first = due_sessions(ledger, meta, now)
    if due.empty:
        if broker is not None:  # a run that died after committing its intents: send what is unsent
            messages += broker_night.submit_outstanding(ledger, broker, ledger.last_session())
        if not outputs_current(ledger):  # a run that died after its last commit: finish its outputs
            write_outputs(ledger)
        if first.date() == now.tz_convert("America/New_York").date():  # today's session: asked too early
            raise PaperRetry(f"paper account {name}: today's session {first.date()} has not closed yet (it closes at {close_time(first)}); try later")
        return _summary(ledger, name, [], [], 0, first, [*messages, f"nothing to do (next: {first.date()}, after its close at {close_time(first)})"], "nothing to do")
    if max_catch_up < 1:
        raise TradesimError(f"--max-catch-up: expected at least 1, got {max_catch_up}")
    remaining = max(0, len(due) - max_catch_up)
    closed_since = len(due)
    due = due[:max_catch_up]
    data = _load(config, due[-1])
    checkpoint("fetched")
    due, gap = _check_bars(data, due, config.data)
    if due.empty and closed_since > STALE_FEED_SESSIONS:
        raise PaperRefusal(
            f"{gap}, and {closed_since - 1} more sessions have closed since: the feed {config.data!r} "
            f"looks dead (more than {STALE_FEED_SESSIONS} closed sessions without a bar); fix the source, then run again"
        )
    missing = gap and f"{gap}; try later (a delisted or renamed ticker needs a new account)"
    if due.empty:
        raise PaperRetry(missing)
    unresolved = _open_events(ledger, _data_events(ledger, data, due, pd.Timestamp(meta["inception"])))
    if unresolved:
        first_event = unresolved[0]
        more = f" (and {len(unresolved) - 1} more)" if len(unresolved) > 1 else ""
        raise PaperRefusal(f"data event {first_event[0]}: {first_event[4]}{more}; check the source, then `tradesim paper resolve {name} {first_event[0]} --accept|--ignore --reason ...`")

    fill = meta["fill"]
    strategy = _strategy(config, fill, progress)
    blob = ledger.fitted()
    strategy.load_state(blob)
    last = ledger.last_session()
    if last is not None:
        strategy.restore_carried(ledger.session_row(last)["carried"])
    inception = pd.Timestamp(meta["inception"])
    decision_days = set(strategy.decision_dates(data.sessions[data.sessions >= inception]))
    first_decision = min(decision_days, default=None)
    deciding = [d for d in due if d in decision_days]
    fold_of_day = _refit(ledger, config, data, inception, due, strategy)
    states = {0: blob, **ledger.refits()} if fold_of_day else {}
    loaded = None if fold_of_day else 0  # a walk-forward account loads each fold's state before its decisions
    decisions, carried = {}, {}
    if strategy.carried_attributes:  # what one decision leaves for the next: one night at a time
        for day in due:
            if day in decision_days:
                if fold_of_day and fold_of_day[day] != loaded:
                    loaded = fold_of_day[day]
                    strategy.load_state(states[loaded])
                decisions[day] = strategy.decide_batch([data.view(day)])[0]
            carried[day] = strategy.carried()
    else:
        for fold in sorted({fold_of_day.get(day, 0) for day in deciding}):
            days = [day for day in deciding if fold_of_day.get(day, 0) == fold]
            if fold != loaded:
                loaded = fold
                strategy.load_state(states[fold])
            decisions.update(zip(days, strategy.decide_batch([data.view(d) for d in days])))
        carried = dict.fromkeys(due, strategy.carried())
    side_rows = _side_rows(strategy.side_tables())
    checkpoint("decided")

    epoch, _, stored_parts = ledger.epoch()
    parts = fingerprint_parts(config, strategy, hashlib.sha256(blob).hexdigest(), meta["dividends"])
    changed = changed_parts(stored_parts, parts)
    if changed and not accept_change:
        raise PaperRefusal(
            f"paper account {name}: what decides changed since epoch {epoch} ({', '.join(changed)}); "
            f"to go on with it, run again with --accept-change \"<reason>\" (a new epoch starts)"
        )
    if changed:
        epoch += 1
        messages.append(f"epoch {epoch} starts on {due[0].date()} ({', '.join(changed)} changed): {accept_change}")
        with ledger.transaction():
            ledger.add_epoch(epoch, session_day(due[0]), {**stored_parts, **{k: parts[k] for k in changed}}, accept_change)

    books = _books(ledger, data.tickers, meta["capital"], last)
    splits = {t: set(map(pd.Timestamp, item.adjustment_dates)) for t, item in data.details.items()}
    previous_weights = {t: w for t, w in ledger.query("SELECT ticker, weight FROM decisions WHERE session = (SELECT MAX(session) FROM decisions)")}
    processed, late = [], []
    newest_closed = last_closed(now)
    for session in due:
        row = data.sessions.get_loc(session)
        following = next_session(session)
        night = Night(session_day(session), bool(now >= calendar().session_open(following)), session_day(following), carried=carried[session])
        printed = {name: data.arrays[name][row] for name in PRINTED}
        night.rows["bars"] = [(night.session, t, *(float(printed[n][i]) for n in PRINTED)) for i, t in enumerate(data.tickers)]
        closes = printed["raw_close"]
        day_splits = {t for t in data.tickers if session in splits.get(t, ())}
        for book in books.values():
            _apply_actions(night, book, printed["adjustment_step"], data.arrays["raw_close"][row - 1], day_splits, meta["dividends"])
            if broker is not None and book.name == "account":  # the broker's fills, as reconciled
                _book_fills(night, book, broker_night.filled_orders(ledger, night.session))
                continue
            pending = ledger.query("SELECT id, ticker, target FROM orders WHERE fill_session = ? AND book = ?", (night.session, book.name))
            if pending:
                prices, _ = fill_prices_of(fill, printed["raw_open"], closes)
                _fill(night, book, pending, prices, closes, config)
        intents = []
        newest = broker is not None and session == newest_closed  # only tonight's orders can still reach their session
        if newest:
            account_book = books["account"]
            night.rows["adjustments"] = broker_night.square_with_broker(ledger, broker, name, night.session, data.tickers, account_book.shares, account_book.cash)
            _apply_adjustments(account_book, night.rows["adjustments"])
        if session in decisions:
            decision = decisions[session]
            check_weights(decision.weights, data.tickers, strategy.name, session, config.max_gross)
            targets = np.array([float(decision.weights.get(t, 0.0)) for t in data.tickers])
            reasons = []
            for ticker, weight in zip(data.tickers, targets):
                log = decision.log.get(ticker, {})
                before = previous_weights.get(ticker, 0.0)
                night.rows["decisions"].append((night.session, ticker, weight, order_action(before, weight), json.dumps(log, sort_keys=True, default=str)))
                reasons.append(_reason(log, before, weight))
            previous_weights = dict(zip(data.tickers, targets))
            night.rows["orders"] += _order_rows("account", night.session, night.next_session, data.tickers, targets, reasons)
            if newest:
                book = books["account"]
                intents = broker_night.intents(meta, night.session, night.next_session, data.tickers, targets, book.shares, book.cash, closes)
            elif broker is not None:
                messages.append(f"orders decided on {night.session} are not sent: a later session has closed (catch-up)")
        priced = np.isfinite(closes)
        if session == first_decision or (first_decision is not None and session > first_decision and (priced != np.isfinite(data.arrays["raw_close"][row - 1])).any()):
            equal = benchmark_targets(priced)  # the backtest's rule: bought with the first decision, re-weighted when the priced tickers change
            night.rows["orders"] += _order_rows("benchmark", night.session, night.next_session, data.tickers, equal, ["equal weight, bought and held"] * len(equal))
        night.rows["side_rows"] = side_rows.get(night.session, [])
        for book in books.values():
            night.rows["positions"] += [(night.session, book.name, t, float(s)) for t, s in zip(data.tickers, book.shares)]
            night.cash[book.name] = float(book.cash)
            night.equity[book.name] = float(book.cash + np.sum(book.shares * closes))
        checkpoint("before-commit")
        with ledger.transaction():
            for table, rows in night.rows.items():
                ledger.insert(table, rows)
            ledger.insert("broker_orders", intents)  # written before anything is sent
            ledger.add_session(
                (night.session, epoch, int(night.late), night.next_session, night.cash["account"], night.equity["account"],
                 night.cash["benchmark"], night.equity["benchmark"], night.carried)
            )
        ledger.write_head()
        checkpoint("after-commit")
        processed.append(night.session)
        if night.late:
            late.append(night.session)
    if missing:
        messages.append(missing)
    if broker is not None:
        messages += broker_night.submit_outstanding(ledger, broker, ledger.last_session())
    summary = _summary(ledger, name, processed, late, remaining, next_session(due[-1]), messages)
    write_outputs(ledger)
    if missing:
        raise PaperRetry(f"processed {', '.join(processed)}; then: {missing}")
    return summary


def _refit(ledger: Ledger, config: RunConfig, data, inception: pd.Timestamp, due: pd.DatetimeIndex, strategy: Strategy) -> dict[pd.Timestamp, int]:
    """A walk-forward account's schedule for the due sessions ({session: fold}; empty for others).
    A fold that begins among them and has no stored state yet is fitted now, on the view its
    schedule allows (what was known `embargo` sessions before the night before it), and its state
    is committed to the ledger before any of its decisions: a rerun loads it."""
    if not config.walk_forward:
        return {}
    test = data.sessions[data.sessions >= inception]
    folds = plan_folds(data.sessions, test, config.walk_forward, config.train_window, config.embargo)
    numbers = dict(zip(due, fold_of(folds, due)))
    stored = set(ledger.refits())
    for fold in folds:
        if fold.number == 0 or fold.number in stored or fold.number not in numbers.values():
            continue
        strategy.fit(fold.training_view(data))
        with ledger.transaction():
            ledger.add_refit(fold.number, session_day(fold.test_first), strategy.state())
        checkpoint("refitted")
    return numbers


def _side_rows(tables: dict[str, pd.DataFrame]) -> dict[str, list[tuple]]:
    """A strategy's side tables (TradExpert's reports, comparisons, rankings) as ledger rows,
    by the session whose decision made them: (session, table, position, row as JSON)."""
    rows: dict[str, list[tuple]] = {}
    for name, table in sorted(tables.items()):
        for day, group in table.groupby("date", sort=True):
            records = group.drop(columns="date").to_dict("records")
            rows.setdefault(str(day), []).extend((str(day), name, i, json.dumps(r, sort_keys=True, default=str)) for i, r in enumerate(records))
    return rows


def _summary(ledger: Ledger, name: str, processed, late, remaining, next_due, messages, status="ok") -> RunSummary:
    last = ledger.last_session()
    row = ledger.session_row(last) if last else None
    return RunSummary(
        account=name,
        processed=processed,
        late=late,
        remaining=remaining,
        next_due=session_day(next_due),
        equity=row["equity"] if row else None,
        benchmark=row["benchmark_equity"] if row else None,
        orders=pending_orders(ledger).to_dict("records"),
        messages=messages,
        status=status,
    )


def write_outputs(ledger: Ledger) -> None:
    """`orders.csv` (tomorrow's orders) and `report.html` beside the ledger, each written atomically."""
    orders = pending_orders(ledger)
    write_atomically(ledger.directory / "orders.csv", orders.to_csv(index=False))
    checkpoint("report")
    write_atomically(ledger.directory / "report.html", account_report(ledger))
    write_atomically(ledger.directory / OUTPUTS, json.dumps({"session": ledger.last_session()}) + "\n")


DRIFT_DECISIONS = {"broker": "--broker", "account": "--account"}
EVENT_DECISIONS = {"accepted": "--accept", "ignored": "--ignore"}


def resolve_event(name: str, event_id: str, decision: str, reason: str, home: Path | None = None) -> None:
    """Mark a recorded data event accepted (the source is right) or ignored (go on regardless); a
    broker account's drift takes the broker's positions (`broker`) or keeps the account's
    (`account`: the difference is held at the broker but is not the account's)."""
    ledger = Ledger.open(account_dir(name, home))
    try:
        row = ledger.query("SELECT kind, status FROM events WHERE id = ?", (event_id,))
        if not row:
            ids = [i for (i,) in ledger.query("SELECT id FROM events WHERE status = 'open'")]
            raise TradesimError(f"paper account {name}: no data event {event_id!r} (open events: {', '.join(ids) or 'none'})")
        wanted = DRIFT_DECISIONS if row[0][0] == "drift" else EVENT_DECISIONS
        if decision not in wanted:
            raise TradesimError(f"{event_id}: a {'drift' if wanted is DRIFT_DECISIONS else 'data event'} is resolved with {' or '.join(wanted.values())}")
        if decision == "broker":
            outside = set(json.loads(ledger.query("SELECT differences FROM drifts WHERE id = ?", (event_id,))[0][0])) - set(ledger.meta()["config"]["tickers"])
            if outside:
                raise TradesimError(f"{event_id}: the broker's {', '.join(sorted(outside))} is outside the account's tickers, so it cannot become the account's; use --account")
        with ledger.transaction():
            ledger.connection.execute("UPDATE events SET status = ?, reason = ? WHERE id = ?", (decision, reason, event_id))
    finally:
        ledger.close()


def notify(command: str, summary: dict[str, Any]) -> str | None:
    """Run the user's notify command with the summary as JSON on stdin; a failure is reported, not raised."""
    try:
        result = subprocess.run(command, shell=True, input=json.dumps(summary, default=str), text=True, capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"--notify-cmd failed: {error}"
    return None if result.returncode == 0 else f"--notify-cmd exited {result.returncode}: {result.stderr.strip()[:200]}"
