"""A small Alpaca paper-trading server on 127.0.0.1, for the real alpaca-py client.

It serves what alpaca-py calls (/v2/account, /v2/clock, /v2/calendar, /v2/orders POST/GET/DELETE,
/v2/orders/{id}, /v2/orders:by_client_order_id, /v2/positions, /v2/assets/{symbol}) and keeps
Alpaca's rules that matter to a nightly job: market-on-open (opg) orders only between 19:00 and
09:28 New York time and only in whole shares, a client order id used once (HTTP 422), and orders
that fill when the test opens a session, at its open moved by a planted slippage, in part, or not
at all. `faults` misbehave once each: "timeout" (accept the order, then answer too late),
"504" (accept it, then a gateway timeout); `hidden` counts lookups of a client id that answer 404
although the order exists, as a lookup racing the order's creation can."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pandas as pd

ACCOUNT_NUMBER = "PA3FAKE00001"
DUPLICATE = {"code": 40010001, "message": "client_order_id must be unique"}


def xnys():
    import exchange_calendars

    return exchange_calendars.get_calendar("XNYS", start="1990-01-01")


class FakeAlpaca:
    def __init__(self, cash: float = 100_000.0):
        self.cash = cash
        self.positions: dict[str, float] = {}
        self.marks: dict[str, float] = {}
        self.orders: list[dict] = []
        self.now = pd.Timestamp("2023-01-03T20:00", tz="America/New_York").tz_convert("UTC")
        self.slippage = 0.0  # a fill's price: the open moved against the order by this fraction
        self.partial: dict[str, float] = {}  # symbol -> fraction of the quantity the auction fills
        self.reject: dict[str, str] = {}  # symbol -> refused at submission with HTTP 403 and this message
        self.faults: list[str] = []
        self.hidden: dict[str, int] = {}
        self.unknown_assets: set[str] = set()
        self.number = ACCOUNT_NUMBER
        self.answer_delay = 0.0
        self.requests: list[tuple[str, str]] = []
        self.posts: list[str] = []  # the client order id of every order POST, accepted or not
        self.keys_seen: set[tuple[str | None, str | None]] = set()
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body go out at once, not 40 ms apart

            def log_message(self, *args):
                pass

            def send(self, status: int, payload) -> None:
                body = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def handle_any(self, method: str) -> None:
                url = urlparse(self.path)
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else {}
                fake.keys_seen.add((self.headers.get("APCA-API-KEY-ID"), self.headers.get("APCA-API-SECRET-KEY")))
                with fake.lock:
                    fake.requests.append((method, url.path))
                    fault = fake.faults.pop(0) if method == "POST" and fake.faults else None
                    if url.path == "/v2/orders:by_client_order_id" and fake.hidden.get(query.get("client_order_id"), 0) > 0:
                        fake.hidden[query["client_order_id"]] -= 1
                        fault = "hide"
                    if method == "POST" and url.path == "/v2/orders":
                        fake.posts.append(body.get("client_order_id"))
                    status, payload = fake.route(method, url.path, query, body)
                if fault == "hide":
                    status, payload = 404, {"code": 40410000, "message": "order not found"}
                if fault == "timeout" and status == 200:
                    time.sleep(fake.answer_delay)
                elif fault == "504" and status == 200:
                    status, payload = 504, {"message": "gateway timeout"}
                try:
                    self.send(status, payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                self.handle_any("GET")

            def do_POST(self):
                self.handle_any("POST")

            def do_DELETE(self):
                self.handle_any("DELETE")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # ------------------------------------------------------------------ the API
    def route(self, method: str, path: str, query: dict, body: dict):
        if path == "/v2/account":
            equity = self.cash + sum(q * self.marks.get(s, 0.0) for s, q in self.positions.items())
            return 200, {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.number)), "account_number": self.number, "status": "ACTIVE",
                         "currency": "USD", "cash": f"{self.cash:.10f}", "equity": f"{equity:.10f}", "buying_power": f"{2 * equity:.10f}"}
        if path == "/v2/clock":
            calendar = xnys()
            minute = self.now.floor("min")
            return 200, {"timestamp": self.now.isoformat(), "is_open": bool(calendar.is_open_on_minute(minute)),
                         "next_open": calendar.next_open(minute).isoformat(), "next_close": calendar.next_close(minute).isoformat()}
        if path == "/v2/calendar":
            calendar = xnys()
            sessions = calendar.sessions_in_range(pd.Timestamp(query["start"]), pd.Timestamp(query["end"]))
            return 200, [{"date": str(s.date()), "open": calendar.session_open(s).tz_convert("America/New_York").strftime("%H:%M"),
                          "close": calendar.session_close(s).tz_convert("America/New_York").strftime("%H:%M")} for s in sessions]
        if path == "/v2/positions":
            return 200, [self.position_json(s, q) for s, q in sorted(self.positions.items()) if q != 0]
        if path.startswith("/v2/assets/"):
            symbol = path.rsplit("/", 1)[1]
            if symbol in self.unknown_assets:
                return 404, {"code": 40410000, "message": "asset not found"}
            return 200, {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, symbol)), "class": "us_equity", "exchange": "NASDAQ", "symbol": symbol,
                         "status": "active", "tradable": True, "marginable": True, "shortable": True, "easy_to_borrow": True, "fractionable": True}
        if path == "/v2/orders:by_client_order_id":
            found = [o for o in self.orders if o["client_order_id"] == query.get("client_order_id")]
            return (200, found[0]) if found else (404, {"code": 40410000, "message": "order not found"})
        if path == "/v2/orders" and method == "POST":
            return self.submit(body)
        if path == "/v2/orders" and method == "GET":
            after = pd.Timestamp(query["after"]) if "after" in query else None
            return 200, [o for o in self.orders if after is None or pd.Timestamp(o["submitted_at"]) > after]
        if path.startswith("/v2/orders/"):
            found = [o for o in self.orders if o["id"] == path.rsplit("/", 1)[1]]
            if not found:
                return 404, {"code": 40410000, "message": "order not found"}
            if method == "DELETE":
                if found[0]["status"] in ("filled", "canceled", "expired", "rejected"):
                    return 422, {"code": 42210000, "message": f"order is already in \"{found[0]['status']}\" state"}
                self.update(found[0], status="canceled", canceled_at=self.now.isoformat())
                return 204, None
            return 200, found[0]
        return 404, {"code": 40400000, "message": f"no route {method} {path}"}

    def submit(self, body: dict):
        if any(o["client_order_id"] == body.get("client_order_id") for o in self.orders):
            return 422, DUPLICATE
        qty = float(body["qty"])
        local = self.now.tz_convert("America/New_York")
        minutes = local.hour * 60 + local.minute
        if body["time_in_force"] == "opg":
            if 9 * 60 + 28 <= minutes < 19 * 60:
                return 422, {"code": 42210000, "message": "opg orders must be submitted after 7:00pm and before 9:28am ET"}
            if qty != int(qty):
                return 422, {"code": 42210000, "message": "fractional orders must be DAY orders"}
        if body["symbol"] in self.reject:
            return 403, {"code": 40310000, "message": self.reject[body["symbol"]]}
        stamp = self.now.isoformat()
        order = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_OID, body["client_order_id"])), "client_order_id": body["client_order_id"], "created_at": stamp, "updated_at": stamp, "submitted_at": stamp,
            "filled_at": None, "expired_at": None, "expires_at": None, "canceled_at": None, "failed_at": None, "replaced_at": None,
            "replaced_by": None, "replaces": None, "asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, body["symbol"])), "symbol": body["symbol"],
            "asset_class": "us_equity", "notional": None, "qty": body["qty"], "filled_qty": "0", "filled_avg_price": None,
            "order_class": "simple", "order_type": "market", "type": "market", "side": body["side"], "time_in_force": body["time_in_force"],
            "limit_price": None, "stop_price": None, "status": "accepted", "extended_hours": False, "legs": None,
        }
        self.orders.append(order)
        return 200, order

    def position_json(self, symbol: str, qty: float) -> dict:
        price = self.marks.get(symbol, 0.0)
        return {"asset_id": str(uuid.uuid5(uuid.NAMESPACE_URL, symbol)), "symbol": symbol, "exchange": "NASDAQ", "asset_class": "us_equity",
                "avg_entry_price": f"{price:.4f}", "qty": f"{abs(qty):.9f}", "side": "long" if qty > 0 else "short",
                "market_value": f"{qty * price:.4f}", "cost_basis": f"{qty * price:.4f}", "current_price": f"{price:.4f}"}

    def update(self, order: dict, **values) -> None:
        order.update(values, updated_at=self.now.isoformat())

    # ------------------------------------------------------------------ the market, driven by the test
    def open_session(self, session, opens: dict[str, float]) -> None:
        """The session's opening auction: every working order fills at its symbol's open moved
        against it by `slippage` (a `partial` symbol fills a whole fraction and keeps working)."""
        with self.lock:
            self.now = xnys().session_open(pd.Timestamp(session))
            for order in self.orders:
                if order["status"] not in ("accepted", "new"):
                    continue
                symbol, qty = order["symbol"], float(order["qty"])
                sign = 1.0 if order["side"] == "buy" else -1.0
                price = opens[symbol] * (1 + sign * self.slippage)
                filled = float(int(qty * self.partial[symbol])) if symbol in self.partial else qty
                if filled:
                    self.positions[symbol] = self.positions.get(symbol, 0.0) + sign * filled
                    self.cash -= sign * filled * price
                self.update(order, status="filled" if filled == qty else "partially_filled", filled_qty=repr(filled),
                            filled_avg_price=f"{price:.10f}" if filled else None, filled_at=self.now.isoformat() if filled else None)

    def split(self, symbol: str, ratio: float) -> None:
        with self.lock:
            if symbol in self.positions:
                self.positions[symbol] *= ratio

    def pay_dividend(self, symbol: str, per_share: float) -> None:
        with self.lock:
            self.cash += self.positions.get(symbol, 0.0) * per_share

    def close_session(self, session, closes: dict[str, float]) -> None:
        with self.lock:
            self.now = xnys().session_close(pd.Timestamp(session))
            self.marks.update(closes)

    def evening(self, session, hour: str = "19:30") -> str:
        """Set the server's clock to that evening (New York) and return it for `--now`."""
        stamp = f"{pd.Timestamp(session).date()}T{hour}"
        with self.lock:
            self.now = pd.Timestamp(stamp, tz="America/New_York").tz_convert("UTC")
        return stamp
