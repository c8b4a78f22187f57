"""A broker account's night, around the simulator's: reconcile what the broker did, book its fills,
make the ledger's cash and positions the broker's (or refuse on drift), size tomorrow's orders in
shares and write them as intents before any is sent, then send each once.

Every intent has a deterministic client order id (the account, the session, the ticker, the side
and the quantity), is committed as `pending` before it is sent, and is looked up by that id before
it is sent again: a rerun, a crash at any point or a request whose answer was lost never sends two
orders for one intent.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pandas as pd

from tradesim.errors import TradesimError
from tradesim.paper.brokers import TERMINAL, Broker, BrokerOrder, BrokerUnavailable, DuplicateOrder, OrderRejected, connect
from tradesim.paper.calendar import last_closed
from tradesim.paper.hooks import PaperRefusal, PaperRetry, checkpoint
from tradesim.paper.ledger import Ledger, has_table

# Market-on-open (opg) orders: Alpaca takes them after 19:00 and before 09:28 New York time.
AUCTION_WINDOW = ("19:00", "09:28")
OPEN_STATES = ("pending", "unknown")  # written or sent, the broker's answer not seen yet
DRIFT_TOLERANCE = 1e-6  # shares: Alpaca reports quantities to 9 decimals
MIN_FRACTIONAL_NOTIONAL = 1.0  # dollars: Alpaca refuses a fractional order worth less


def is_broker(meta: dict) -> bool:
    return meta.get("broker", "sim") != "sim"


def time_in_force(meta: dict) -> str:
    return "opg" if meta["order_timing"] == "auction" else "day"


def check_order_timing(name: str, meta: dict, now: pd.Timestamp) -> None:
    """An auction account's night must end inside the window in which the broker takes opg orders."""
    if not is_broker(meta) or meta["order_timing"] != "auction":
        return
    local = now.tz_convert("America/New_York")
    minutes = local.hour * 60 + local.minute
    if 9 * 60 + 28 <= minutes < 19 * 60:
        raise PaperRetry(
            f"paper account {name}: its orders are market-on-open (--order-timing auction), which the broker takes only from "
            f"{AUCTION_WINDOW[0]} to {AUCTION_WINDOW[1]} New York time, and it is {local:%H:%M}; run again after {AUCTION_WINDOW[0]}"
        )


def open_broker(name: str, meta: dict) -> Broker:
    """The account's broker, from the environment's keys, checked to be the account it was made on."""
    broker = connect(meta["broker"])
    number = broker.account().number
    if number != meta["broker_account"]:
        raise TradesimError(f"paper account {name}: the keys in the environment are for broker account {number}, this account trades {meta['broker_account']}")
    return broker


def client_order_id(account_id: str, session: str, ticker: str, side: str, qty: float) -> str:
    digest = hashlib.sha256(json.dumps([account_id, session, ticker, side, repr(float(qty))]).encode()).hexdigest()
    return f"ts-{session}-{ticker}-{side}-{digest[:20]}"


# ---------------------------------------------------------------------- reconcile
def _record(ledger: Ledger, client_id: str, order: BrokerOrder | None, state: str | None = None, reason: str | None = None) -> None:
    if order is None:
        ledger.connection.execute("UPDATE broker_orders SET state = ?, reason = ? WHERE client_id = ?", (state, reason, client_id))
        return
    status = state or order.status
    why = reason or (f"the broker says {order.status}" if order.status in ("canceled", "expired", "rejected", "done_for_day") else None)
    ledger.connection.execute(
        "UPDATE broker_orders SET state = ?, broker_id = ?, filled_qty = ?, filled_avg_price = ?, reason = COALESCE(?, reason), updated = ? WHERE client_id = ?",
        (status, order.broker_id, order.filled_qty, order.filled_avg_price, why, order.updated_at, client_id),
    )


def reconcile(ledger: Ledger, broker: Broker, now: pd.Timestamp) -> list[str]:
    """Look up every order not final in the ledger by its client id and record the broker's answer.
    An order still working after its session closed is cancelled, then looked up again (a partial
    fill keeps what filled); one the broker never got and whose session has passed is not_sent."""
    closed = last_closed(now)
    messages = []
    waiting = ledger.query(f"SELECT client_id, fill_session, state FROM broker_orders WHERE state NOT IN ({', '.join('?' * len(TERMINAL))}, 'not_sent')", TERMINAL)
    for client_id, fill_session, state in waiting:
        found = broker.order_by_client_id(client_id)
        passed = pd.Timestamp(fill_session) <= closed
        if found is None:
            if state in OPEN_STATES and passed:
                with ledger.transaction():
                    _record(ledger, client_id, None, "not_sent", f"the broker never got it before {fill_session}")
            elif state not in OPEN_STATES:  # never booked as gone on one answer: its fills would be lost
                raise BrokerUnavailable(f"order {client_id}: the broker confirmed it ({state}) but does not find it now; try later")
            continue
        if not found.terminal and passed:
            broker.cancel(found.broker_id)
            found = broker.order_by_client_id(client_id) or found
            if not found.terminal:
                raise BrokerUnavailable(f"order {client_id}: still {found.status} at the broker after its session {fill_session} closed and a cancel; try later")
            messages.append(f"order {client_id}: still working after {fill_session} closed: cancelled ({found.filled_qty:g} of {found.qty:g} filled)")
        with ledger.transaction():
            _record(ledger, client_id, found)
    checkpoint("reconciled")
    return messages


def filled_orders(ledger: Ledger, session: str) -> list[tuple]:
    """The broker's fills of the orders for `session`, as fills rows of the account book."""
    rows = ledger.query(
        "SELECT client_id, ticker, side, filled_qty, filled_avg_price FROM broker_orders WHERE fill_session = ? AND filled_qty > 0 ORDER BY side DESC, client_id",
        (session,),
    )
    return [(client_id, session, "account", ticker, side, float(qty), float(price), 0.0) for client_id, ticker, side, qty, price in rows]


# ---------------------------------------------------------------------- the ledger becomes the broker's
def outside_positions(ledger: Ledger) -> dict[str, float]:
    """Shares at the broker that a person said are not the account's (drift resolved --account)."""
    outside: dict[str, float] = {}
    for (differences,) in ledger.query("SELECT d.differences FROM drifts d JOIN events e ON e.id = d.id WHERE e.status = 'account'"):
        for ticker, shares in json.loads(differences).items():
            outside[ticker] = outside.get(ticker, 0.0) + shares
    return outside


def differences(broker_positions: dict[str, float], outside: dict[str, float], ledger_positions: dict[str, float]) -> dict[str, float]:
    tickers = sorted(set(broker_positions) | set(outside) | set(ledger_positions))
    found = {t: broker_positions.get(t, 0.0) - outside.get(t, 0.0) - ledger_positions.get(t, 0.0) for t in tickers}
    return {t: round(d, 9) for t, d in found.items() if abs(d) > DRIFT_TOLERANCE}


def square_with_broker(ledger: Ledger, broker: Broker, name: str, session: str, tickers: tuple[str, ...], shares: np.ndarray, cash: float) -> list[tuple]:
    """Adjustment rows that make the account's shares and cash after `session` the broker's.
    Shares that differ are drift: recorded as a data event and refused until a person resolves it
    (--broker: take the broker's; --account: the difference is not the account's). Cash always
    becomes the broker's (its commissions, rounding and dividends), and the difference is kept."""
    held = dict(zip(tickers, map(float, shares)))
    drift = differences(broker.positions(), outside_positions(ledger), held)
    rows = []
    if drift:
        event = f"drift/{session}/{hashlib.sha256(json.dumps(drift, sort_keys=True).encode()).hexdigest()[:8]}"
        status = ledger.query("SELECT status FROM events WHERE id = ?", (event,))
        if not status:
            said = ", ".join(f"{t} {d:+g}" for t, d in drift.items())
            with ledger.transaction():
                ledger.insert("events", [(event, session, ",".join(drift), "drift", f"the broker's positions differ from the account's after {session} (broker minus account: {said})", "open", None)])
                ledger.insert("drifts", [(event, json.dumps(drift, sort_keys=True))])
            status = [("open",)]
        if status[0][0] == "open":
            raise PaperRefusal(
                f"paper account {name}: drift {event}: the broker holds {', '.join(f'{t} {d:+g}' for t, d in drift.items())} shares more than the account; "
                f"`tradesim paper resolve {name} {event} --broker|--account --reason ...` takes the broker's positions or keeps the account's"
            )
        if status[0][0] == "broker":
            rows += [(session, "account", ticker, "drift", delta, 0.0, f"drift {event} resolved: the broker's position") for ticker, delta in drift.items()]
    broker_cash = broker.account().cash
    if abs(broker_cash - cash) > 1e-6:
        rows.append((session, "account", "", "cash", 0.0, broker_cash - cash, "the broker's cash (its fills, fees, dividends and rounding as it booked them)"))
    return rows


# ---------------------------------------------------------------------- tomorrow's orders
def intents(meta: dict, session: str, fill_session: str, tickers, targets: np.ndarray, shares: np.ndarray, cash: float, closes: np.ndarray) -> list[tuple]:
    """broker_orders rows for the orders that take the account from `shares` to `targets`, sized
    at the session's closes: whole shares for market-on-open (the residue stays in cash),
    fractions to 9 decimals for day orders (shorts in whole shares, as Alpaca requires; a
    fraction worth less than $1 is not sent). Sells first, so that their cash is there for the
    buys."""
    priced = np.isfinite(closes)
    equity = cash + float(np.sum(np.where(priced, shares * np.nan_to_num(closes), 0.0)))
    wanted = np.where(priced & (closes > 0), targets * equity / np.where(priced, closes, 1.0), shares)
    whole = meta["order_timing"] == "auction"
    wanted = np.where(whole | (wanted < 0), np.trunc(wanted), np.trunc(wanted * 1e9) / 1e9)
    delta = wanted - shares
    delta = np.trunc(delta) if whole else np.round(delta, 9)
    rows = []
    force = time_in_force(meta)
    for column in np.argsort(delta, kind="stable"):  # sells (negative) first
        qty = float(abs(delta[column]))
        if qty < 1e-9 or (qty != int(qty) and qty * closes[column] < MIN_FRACTIONAL_NOTIONAL):
            continue  # nothing to do, or a fraction worth less than the broker takes
        side = "buy" if delta[column] > 0 else "sell"
        ticker = tickers[column]
        client_id = client_order_id(meta["account_id"], session, ticker, side, qty)
        rows.append((client_id, session, fill_session, ticker, side, qty, force, "pending", None, 0.0, None, None, None))
    return rows


def submit_outstanding(ledger: Ledger, broker: Broker, last: str | None) -> list[str]:
    """Send the intents of the newest session once each: look each up by its client id first (a
    crash may have sent it), send it if the broker has not got it, and record the answer. No
    answer leaves it unknown: the run ends with try-later and the next run looks it up."""
    messages = []
    stale = ledger.query("SELECT client_id FROM broker_orders WHERE state IN ('pending', 'unknown') AND decided < ?", (last or "",))
    for (client_id,) in stale:  # an older night's intents (a crash before they were sent): too late now
        found = broker.order_by_client_id(client_id)
        with ledger.transaction():
            if found is None:
                _record(ledger, client_id, None, "not_sent", "not sent before a later session closed; only the newest night's orders are sent")
            else:
                _record(ledger, client_id, found)
    waiting = ledger.query(
        "SELECT client_id, ticker, side, qty, time_in_force FROM broker_orders WHERE state IN ('pending', 'unknown') AND decided = ? "
        "ORDER BY CASE side WHEN 'sell' THEN 0 ELSE 1 END, client_id",
        (last or "",),
    )
    unknown = []
    for client_id, ticker, side, qty, force in waiting:
        found = broker.order_by_client_id(client_id)
        if found is None:
            try:
                found = broker.submit(client_id, ticker, side, qty, force)
            except DuplicateOrder:  # sent before, its answer lost: the broker's record is the answer
                found = broker.order_by_client_id(client_id)
                if found is None:
                    unknown.append(client_id)
                    continue
            except OrderRejected as error:
                with ledger.transaction():
                    _record(ledger, client_id, None, "rejected", f"refused when sent: {error}")
                messages.append(f"order {client_id}: {side} {qty:g} {ticker} refused by the broker: {error}")
                checkpoint("submitted")
                continue
            except BrokerUnavailable as error:
                with ledger.transaction():
                    _record(ledger, client_id, None, "unknown", str(error))
                unknown.append(client_id)
                continue
        with ledger.transaction():
            _record(ledger, client_id, found)
        messages.append(f"sent {side} {qty:g} {ticker} ({force}) as {client_id}: {found.status}")
        checkpoint("submitted")
    if unknown:
        raise PaperRetry(f"{len(unknown)} orders sent without an answer ({', '.join(unknown[:3])}); run again: each is looked up by its client id before anything is sent")
    return messages


def broker_orders_frame(ledger: Ledger) -> pd.DataFrame:
    rows = [] if not has_table(ledger.connection, "broker_orders") else ledger.query("SELECT decided, fill_session, ticker, side, qty, time_in_force, state, filled_qty, filled_avg_price, reason, client_id, broker_id FROM broker_orders ORDER BY decided, client_id")
    return pd.DataFrame(rows, columns=["decided", "fill_session", "ticker", "side", "qty", "time_in_force", "state", "filled_qty", "filled_avg_price", "reason", "client_id", "broker_id"])
