"""Where a paper account's orders go: the narrow interface a nightly run needs from a broker, and
Alpaca's paper endpoint behind it (alpaca-py, the `tradesim[alpaca]` extra).

The `sim` broker is not an object behind this interface: it fills the account's target weights
inside the night at the next session's bar (`tradesim.engine.rebalance`), exactly as the backtest
does, so that a `sim` account equals its backtest. A real broker gets whole orders in shares,
sized at the close, and its record of fills is the account's: that difference is what
`tradesim paper verify` measures.

Keys come only from the environment (APCA_API_KEY_ID, APCA_API_SECRET_KEY; APCA_API_BASE_URL may
point elsewhere, e.g. a local test server); they are held by the client and never written. Only a
paper endpoint and a paper account (number starting PA) are accepted: nothing here trades money.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlparse

import pandas as pd

from tradesim.errors import TradesimError

BROKERS = ("sim", "alpaca")
ORDER_TIMINGS = ("auction", "day")
KEY_ENV, SECRET_ENV, URL_ENV = "APCA_API_KEY_ID", "APCA_API_SECRET_KEY", "APCA_API_BASE_URL"
TIMEOUT_ENV = "TRADESIM_BROKER_TIMEOUT"  # seconds a request may take before its outcome is unknown
PAPER_URL = "https://paper-api.alpaca.markets"
LIVE_HOSTS = ("api.alpaca.markets",)
# Statuses after which an order changes no more (Alpaca's names).
TERMINAL = ("filled", "canceled", "expired", "rejected", "done_for_day", "replaced", "stopped", "suspended")


class BrokerUnavailable(TradesimError):
    """The broker did not answer (timeout, connection, server error): try later."""

    exit_code = 75


class OrderRejected(Exception):
    """The broker refused an order when it was submitted (its message says why)."""


class DuplicateOrder(Exception):
    """The client order id is already known to the broker (HTTP 422): look it up, never resubmit."""


@dataclass(frozen=True)
class BrokerOrder:
    client_id: str
    broker_id: str
    ticker: str
    side: str
    qty: float
    status: str
    filled_qty: float
    filled_avg_price: float | None
    time_in_force: str
    submitted_at: str | None
    updated_at: str | None

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class BrokerAccount:
    number: str
    cash: float
    equity: float
    buying_power: float


@dataclass(frozen=True)
class BrokerClock:
    timestamp: pd.Timestamp
    is_open: bool
    next_open: pd.Timestamp
    next_close: pd.Timestamp


class Broker(Protocol):
    """What a nightly run asks of a broker."""

    name: str

    def clock(self) -> BrokerClock: ...

    def calendar(self, start: str, end: str) -> list[tuple[str, pd.Timestamp, pd.Timestamp]]: ...

    def account(self) -> BrokerAccount: ...

    def asset(self, ticker: str) -> dict[str, bool]: ...

    def positions(self) -> dict[str, float]: ...

    def orders_since(self, since: pd.Timestamp) -> list[BrokerOrder]: ...

    def order_by_client_id(self, client_id: str) -> BrokerOrder | None: ...

    def submit(self, client_id: str, ticker: str, side: str, qty: float, time_in_force: str) -> BrokerOrder: ...

    def cancel(self, broker_id: str) -> None: ...


def symbol_of(ticker: str) -> str:
    """Yahoo's class-share dash (BRK-B) is Alpaca's dot (BRK.B)."""
    return ticker.replace("-", ".")


def ticker_of(symbol: str) -> str:
    return symbol.replace(".", "-")


def _message(error) -> str:
    """The broker's own words from an alpaca-py APIError (its body is JSON with a message, or text)."""
    text = str(error)
    try:
        return str(json.loads(text).get("message", text))
    except (ValueError, AttributeError):
        return text[:300]


def is_duplicate(status: int | None, message: str) -> bool:
    """A duplicate client order id: HTTP 422 and a message naming the id; the numeric codes seen in
    the wild differ, so they are not used."""
    lowered = message.lower()
    return status == 422 and "client_order_id" in lowered.replace(" ", "_") and ("unique" in lowered or "duplicate" in lowered or "exists" in lowered)


def _number(value) -> float:
    return float(value) if value not in (None, "") else 0.0


class Alpaca:
    """Alpaca's paper trading API through alpaca-py's TradingClient."""

    name = "alpaca"

    def __init__(self, client, url: str):
        self.client, self.url = client, url

    @classmethod
    def from_env(cls) -> Alpaca:
        key, secret = os.environ.get(KEY_ENV), os.environ.get(SECRET_ENV)
        if not key or not secret:
            raise TradesimError(f"broker alpaca: set {KEY_ENV} and {SECRET_ENV} in the environment (paper keys; they are never read from a file or a flag)")
        url = os.environ.get(URL_ENV) or PAPER_URL
        host = urlparse(url).hostname or ""
        if not urlparse(url).scheme or not host:
            raise TradesimError(f"{URL_ENV}: expected a URL like {PAPER_URL}, got {url!r}")
        if host in LIVE_HOSTS:
            raise TradesimError(f"{URL_ENV}: {host} is Alpaca's live endpoint; tradesim trades only paper accounts ({PAPER_URL})")
        try:
            from alpaca.trading.client import TradingClient
        except ImportError:
            raise TradesimError("broker alpaca needs alpaca-py: pip install 'tradesim[alpaca]'") from None
        client = TradingClient(key, secret, paper=True, url_override=url.rstrip("/"))
        # alpaca-py sets no timeout and retries a 504 itself; here a request that does not answer in
        # time, or a server error, makes its order unknown, and the run looks it up by client id.
        client._session.request = functools.partial(client._session.request, timeout=float(os.environ.get(TIMEOUT_ENV, "30")))
        client._retry_codes = [429]
        return cls(client, url)

    # ------------------------------------------------------------------ calls
    def _call(self, what: str, call, *args):
        from alpaca.common.exceptions import APIError
        import requests

        try:
            return call(*args)
        except APIError as error:
            status = error.status_code
            if status is not None and status >= 500:
                raise BrokerUnavailable(f"broker alpaca ({self.url}): {what}: server error {status}: {_message(error)}; try later") from None
            if status in (401, 403) and what in ("account", "clock"):
                raise TradesimError(f"broker alpaca ({self.url}): the keys in {KEY_ENV}/{SECRET_ENV} were refused ({status}: {_message(error)})") from None
            raise
        except requests.RequestException as error:
            raise BrokerUnavailable(f"broker alpaca ({self.url}): {what}: no answer ({type(error).__name__}); try later") from None

    @staticmethod
    def _order(order) -> BrokerOrder:
        value = lambda item: getattr(item, "value", item)  # noqa: E731 - alpaca-py enums
        return BrokerOrder(
            client_id=order.client_order_id,
            broker_id=str(order.id),
            ticker=ticker_of(order.symbol or ""),
            side=value(order.side),
            qty=_number(order.qty),
            status=value(order.status),
            filled_qty=_number(order.filled_qty),
            filled_avg_price=float(order.filled_avg_price) if order.filled_avg_price not in (None, "") else None,
            time_in_force=value(order.time_in_force),
            submitted_at=str(order.submitted_at) if order.submitted_at else None,
            updated_at=str(order.updated_at) if order.updated_at else None,
        )

    def clock(self) -> BrokerClock:
        clock = self._call("clock", self.client.get_clock)
        return BrokerClock(pd.Timestamp(clock.timestamp), bool(clock.is_open), pd.Timestamp(clock.next_open), pd.Timestamp(clock.next_close))

    def calendar(self, start: str, end: str) -> list[tuple[str, pd.Timestamp, pd.Timestamp]]:
        from alpaca.trading.requests import GetCalendarRequest

        days = self._call("calendar", self.client.get_calendar, GetCalendarRequest(start=pd.Timestamp(start).date(), end=pd.Timestamp(end).date()))
        return [(str(day.date), pd.Timestamp(day.open), pd.Timestamp(day.close)) for day in days]

    def account(self) -> BrokerAccount:
        account = self._call("account", self.client.get_account)
        return BrokerAccount(str(account.account_number), _number(account.cash), _number(account.equity), _number(account.buying_power))

    def asset(self, ticker: str) -> dict[str, bool]:
        """Whether the broker trades the ticker, in fractions, and short ({} when it does not know it)."""
        from alpaca.common.exceptions import APIError

        try:
            asset = self._call("asset", self.client.get_asset, symbol_of(ticker))
        except APIError as error:
            if error.status_code == 404:
                return {}
            raise BrokerUnavailable(f"broker alpaca ({self.url}): asset {ticker}: {error.status_code}: {_message(error)}") from None
        return {"tradable": bool(asset.tradable), "fractionable": bool(asset.fractionable), "shortable": bool(asset.shortable)}

    def positions(self) -> dict[str, float]:
        held = {}
        for position in self._call("positions", self.client.get_all_positions):
            quantity = _number(position.qty)
            side = getattr(position.side, "value", position.side)
            held[ticker_of(position.symbol)] = -abs(quantity) if side == "short" else quantity
        return held

    def orders_since(self, since: pd.Timestamp) -> list[BrokerOrder]:
        from alpaca.trading.enums import QueryOrderStatus
        from alpaca.trading.requests import GetOrdersRequest

        request = GetOrdersRequest(status=QueryOrderStatus.ALL, after=pd.Timestamp(since).to_pydatetime(), limit=500, direction="asc")
        return [self._order(order) for order in self._call("orders", self.client.get_orders, request)]

    def order_by_client_id(self, client_id: str) -> BrokerOrder | None:
        from alpaca.common.exceptions import APIError

        try:
            return self._order(self._call("order lookup", self.client.get_order_by_client_id, client_id))
        except APIError as error:
            if error.status_code == 404:
                return None
            raise BrokerUnavailable(f"broker alpaca ({self.url}): order lookup {client_id}: {error.status_code}: {_message(error)}") from None

    def submit(self, client_id: str, ticker: str, side: str, qty: float, time_in_force: str) -> BrokerOrder:
        """Raises OrderRejected (the broker refused it), DuplicateOrder (the id is known: look it up)
        or BrokerUnavailable (no answer: the order's fate is unknown until looked up)."""
        from alpaca.common.exceptions import APIError
        from alpaca.trading.requests import MarketOrderRequest

        request = MarketOrderRequest(symbol=symbol_of(ticker), qty=qty, side=side, time_in_force=time_in_force, client_order_id=client_id)
        try:
            return self._order(self._call("submit", self.client.submit_order, request))
        except APIError as error:
            message = _message(error)
            if is_duplicate(error.status_code, message):
                raise DuplicateOrder(message) from None
            raise OrderRejected(f"{error.status_code}: {message}") from None

    def cancel(self, broker_id: str) -> None:
        from alpaca.common.exceptions import APIError

        try:
            self._call("cancel", self.client.cancel_order_by_id, broker_id)
        except APIError as error:
            if error.status_code not in (404, 422):  # already done: the lookup after it says how
                raise BrokerUnavailable(f"broker alpaca ({self.url}): cancel {broker_id}: {error.status_code}: {_message(error)}") from None


def connect(broker: str) -> Broker:
    if broker == "alpaca":
        return Alpaca.from_env()
    raise TradesimError(f"broker {broker!r}: expected one of {', '.join(BROKERS)}")
