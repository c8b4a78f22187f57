"""Paper accounts at a broker, proven against a fake Alpaca server through the real alpaca-py client:
a night's orders and their fills at the next open with a planted slippage, a rejected order, a
partial fill, the auction hours, a lost answer and a duplicate id, SIGKILL at every step followed
by a rerun (never two orders for one intent), drift found and resolved, a catch-up, and the keys
absent from everything the account writes."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import tradesim
from fake_alpaca import ACCOUNT_NUMBER, FakeAlpaca
from paper_helpers import cli, night_in_child, printed_bars, write_bars, write_config, xnys_sessions
from tradesim.paper import account as paper
from tradesim.paper import reading as paper_reading

START, SESSIONS = "2023-01-03", 110
DATES = xnys_sessions(START, SESSIONS)
INCEPTION = DATES[90]
SPLIT_DAY, DIVIDEND_DAY = DATES[94], DATES[96]
TICKERS = ("AAA", "BBB", "CCC")
KEY, SECRET = "PKTESTKEY0123456789", "sEcReT-9f8e7d6c5b4a3210"


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("TRADESIM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv(paper.KILL_ENV, raising=False)
    return tmp_path / "home"


@pytest.fixture
def alpaca(monkeypatch):
    fake = FakeAlpaca(cash=100_000.0)
    monkeypatch.setenv("APCA_API_KEY_ID", KEY)
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    monkeypatch.setenv("APCA_API_BASE_URL", fake.url)
    monkeypatch.setenv("TRADESIM_BROKER_TIMEOUT", "1")
    yield fake
    fake.close()


FRAMES = printed_bars(TICKERS, START, SESSIONS, seed=7, splits={"AAA": (SPLIT_DAY, 2.0)}, dividends={"BBB": (DIVIDEND_DAY, 0.02)})


def prices(column: str, session) -> dict[str, float]:
    day = str(pd.Timestamp(session).date())
    return {t: float(f.loc[f["Date"] == day, column].iloc[0]) for t, f in FRAMES.items()}


def signals(path):
    """Long-only weights that change every session, so that every night sends orders."""
    rng = np.random.default_rng(3)
    rows = [{"date": str(d.date()), "ticker": t, "weight": round(float(w), 4)} for d in DATES[85:] for t, w in zip(TICKERS, rng.uniform(0.05, 0.3, 3))]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def config_file(tmp_path, **values):
    data = write_bars(tmp_path / "data", FRAMES)
    values = {"fill": "next-open", "cost_bps": 1, "slippage_bps": 2, **values}
    return write_config(tmp_path / "acct.toml", data, "signals", TICKERS, params={"signals": str(signals(tmp_path / "signals.csv"))}, **values)


def make(tmp_path, fake, *extra, timing="auction"):
    config = config_file(tmp_path)
    made = cli("paper", "init", "acct", "--config", config, "--inception", INCEPTION.date(), "--broker", "alpaca", "--order-timing", timing,
               "--now", fake.evening(DATES[89]), *extra)
    assert made.exit_code == 0, made.output
    return config


def trade_day(fake, session) -> None:
    """The session at the broker: a split before the open, the opening auction, the close, and a
    dividend paid in cents (the simulator's figure is not rounded: the ledger takes the broker's)."""
    if session == SPLIT_DAY:
        fake.split("AAA", 2.0)
    if session == DIVIDEND_DAY:  # to the holders before the ex-date
        previous = prices("Close", DATES[DATES.get_loc(session) - 1])["BBB"]
        fake.pay_dividend("BBB", np.floor(previous * 0.02 * 100) / 100)
    fake.open_session(session, prices("Open", session))
    fake.close_session(session, prices("Close", session))


def night(fake, session, *extra, hour="19:30", trade=True):
    if trade:
        trade_day(fake, session)
    return cli("paper", "run", "acct", "--now", fake.evening(session, hour), *extra)


def ledger_state():
    ledger = paper_reading.open_account("acct")
    try:
        last = ledger.last_session()
        held = {t: s for t, s in ledger.query("SELECT ticker, shares FROM positions WHERE session = ? AND book = 'account' AND shares != 0", (last,))}
        return held, ledger.session_row(last)["cash"]
    finally:
        ledger.close()


def assert_ledger_is_the_brokers(fake):
    held, cash = ledger_state()
    assert held.keys() == {t for t, q in fake.positions.items() if q}
    for ticker, shares in held.items():
        assert shares == pytest.approx(fake.positions[ticker], abs=1e-9)
    assert cash == pytest.approx(fake.cash, abs=1e-6)


def assert_each_intent_sent_once(fake):
    accepted = [o["client_order_id"] for o in fake.orders]
    assert len(accepted) == len(set(accepted))
    orders = tradesim.open_paper("acct").broker_orders
    sent = orders[~orders["state"].isin(["pending", "not_sent"])]
    assert set(sent["client_id"]) <= set(fake.posts)
    assert set(accepted) <= set(orders["client_id"])


def test_day_orders_are_fractional_and_fill_at_the_broker(tmp_path, alpaca):
    make(tmp_path, alpaca, timing="day")
    alpaca.slippage = 0.0005
    for session in DATES[90:94]:
        result = night(alpaca, session, hour="17:00")  # day orders may go before 19:00
        assert result.exit_code == 0, result.output
        assert_ledger_is_the_brokers(alpaca)
    account = tradesim.open_paper("acct")
    orders = account.broker_orders
    assert set(orders["time_in_force"]) == {"day"} and not np.isclose(orders["qty"], orders["qty"].round()).all()
    np.testing.assert_allclose(account.fill_comparison["slippage_bps"], 5.0, atol=1e-6)


def test_a_broker_account_trades_there_and_its_ledger_is_the_brokers(tmp_path, home, alpaca):
    make(tmp_path, alpaca)
    alpaca.slippage = 0.0005  # every fill 5 bps worse than the open
    outputs = []
    for session in DATES[90:99]:
        result = night(alpaca, session)
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
        assert_ledger_is_the_brokers(alpaca)
    assert_each_intent_sent_once(alpaca)
    account = tradesim.open_paper("acct")
    orders = account.broker_orders
    assert set(orders["time_in_force"]) == {"opg"} and np.isclose(orders["qty"], orders["qty"].round()).all()  # whole shares
    assert sorted(alpaca.posts) == sorted(orders["client_id"])  # every intent sent, once
    comparison = account.fill_comparison
    assert len(comparison) == len(orders[orders["state"] == "filled"]) > 20
    np.testing.assert_allclose(comparison["slippage_bps"], 5.0, atol=1e-6)
    assert (comparison["cost_vs_open"] > 0).all()
    fills = account.fills
    assert set(fills[fills["book"] == "account"]["order_id"]) == set(comparison["client_id"])
    ledger = paper_reading.open_account("acct")
    adjustments = ledger.query("SELECT session, kind, ticker, shares, cash FROM adjustments")
    ledger.close()
    dividend = [a for a in adjustments if a[0] == str(DIVIDEND_DAY.date())]
    held_bbb = account.positions.loc[str(DATES[95].date()), "BBB"]
    assert held_bbb > 0 and dividend and dividend[0][1] == "cash" and -0.01 * held_bbb <= dividend[0][4] < 0  # cents rounding, as the broker paid
    assert not [a for a in adjustments if a[1] == "drift"]
    split_shares = account.positions["AAA"]
    assert split_shares.loc[str(SPLIT_DAY.date())] != 0
    checked = cli("paper", "verify", "acct")
    assert checked.exit_code == 0, checked.output
    assert "slippage against the open +5.00 bps" in checked.output and "tracking: the account ends" in checked.output
    assert "per trade: mean slippage +5.00 bps, 95% interval [+5.00, +5.00]" in checked.output
    status = cli("paper", "status", "acct", "--now", alpaca.evening(DATES[98], "20:00"))
    assert f"broker alpaca account {ACCOUNT_NUMBER}" in status.output and "drift: none" in status.output, status.output
    report = cli("paper", "report", "acct")
    assert report.exit_code == 0 and "Broker fills against the simulator" in (home / "paper" / "acct" / "report.html").read_text()
    tracking = account.tracking
    assert len(tracking) > 5 and tracking["difference"].abs().max() > 0
    # the keys reached the broker, and nothing else
    assert alpaca.keys_seen == {(KEY, SECRET)}
    for path in home.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert KEY.encode() not in content and SECRET.encode() not in content, path
    for text in [*outputs, checked.output, status.output, report.output]:
        assert KEY not in text and SECRET not in text


def test_rejections_partial_fills_and_the_auction_hours(tmp_path, alpaca):
    make(tmp_path, alpaca)
    assert night(alpaca, DATES[90]).exit_code == 0
    alpaca.partial = {"AAA": 0.5}
    trade_day(alpaca, DATES[91])
    early = cli("paper", "run", "acct", "--now", alpaca.evening(DATES[91], "18:30"))
    assert early.exit_code == 75 and "19:00" in early.output and "run again after 19:00" in early.output, early.output
    alpaca.reject = dict.fromkeys(TICKERS, "insufficient buying power")
    refused = night(alpaca, DATES[91], trade=False)
    assert refused.exit_code == 0, refused.output
    assert "refused by the broker: 403: insufficient buying power" in refused.output
    alpaca.reject = {}
    alpaca.partial = {}
    assert night(alpaca, DATES[92]).exit_code == 0
    orders = tradesim.open_paper("acct").broker_orders.set_index("client_id")
    partial = orders[(orders["decided"] == str(DATES[90].date())) & (orders["ticker"] == "AAA")].iloc[0]
    assert partial["state"] == "canceled" and partial["filled_qty"] == np.trunc(partial["qty"] * 0.5) > 0
    rejected = orders[orders["decided"] == str(DATES[91].date())]
    assert len(rejected) and (rejected["state"] == "rejected").all() and rejected["reason"].str.contains("insufficient buying power").all()
    assert_ledger_is_the_brokers(alpaca)  # the half that filled, nothing of the rejected order
    fills = tradesim.open_paper("acct").fills
    assert fills[fills["order_id"] == partial.name]["shares"].tolist() == [partial["filled_qty"]]
    assert cli("paper", "verify", "acct").exit_code == 0


def test_an_answer_lost_after_the_broker_took_the_order_never_sends_it_twice(tmp_path, alpaca):
    make(tmp_path, alpaca)
    alpaca.answer_delay = 1.5  # longer than the client waits (TRADESIM_BROKER_TIMEOUT=1)
    for fault in ("timeout", "504"):
        session = DATES[90] if fault == "timeout" else DATES[91]
        alpaca.faults = [fault]
        lost = night(alpaca, session)
        assert lost.exit_code == 75 and "without an answer" in lost.output, lost.output
        status = cli("paper", "status", "acct", "--now", alpaca.evening(session, "20:00"))
        assert " unknown" in status.output
        posted = list(alpaca.posts)
        again = night(alpaca, session, trade=False, hour="20:00")
        assert again.exit_code == 0, again.output
        assert alpaca.posts == posted  # looked up by client id, found, not sent again
        assert_each_intent_sent_once(alpaca)
    alpaca.faults = ["timeout"]
    assert night(alpaca, DATES[92]).exit_code == 75
    orders = tradesim.open_paper("acct").broker_orders
    (unknown,) = orders[orders["state"] == "unknown"]["client_id"]
    alpaca.hidden = {unknown: 2}  # both lookups (reconciling, then before sending) miss it: the send is refused with 422, and looked up
    assert night(alpaca, DATES[92], trade=False, hour="20:00").exit_code == 0
    assert len(alpaca.posts) == len(set(alpaca.posts)) + 1
    assert_each_intent_sent_once(alpaca)
    orders = tradesim.open_paper("acct").broker_orders
    assert set(orders[orders["decided"] == str(DATES[92].date())]["state"]) == {"accepted"}
    assert night(alpaca, DATES[93]).exit_code == 0
    assert_ledger_is_the_brokers(alpaca)


KILLS = ["reconciled", "fetched", "decided", "before-commit", "after-commit", "submitted", "submitted:2", "report"]


def test_a_kill_at_every_step_and_a_rerun_send_each_order_once(tmp_path, alpaca):
    """One night killed at each step in turn (SIGKILL, no cleanup), each followed by a rerun."""
    make(tmp_path, alpaca)
    assert night(alpaca, DATES[90]).exit_code == 0
    for session, point in zip(DATES[91:], KILLS):
        trade_day(alpaca, session)
        now = alpaca.evening(session)
        posted = len(alpaca.posts)
        assert night_in_child("acct", now, kill_at=point), point
        checked = cli("paper", "verify", "acct")
        assert checked.exit_code == 0, (point, checked.output)
        rerun = cli("paper", "run", "acct", "--now", now)
        assert rerun.exit_code == 0, (point, rerun.output)
        assert len(alpaca.posts) == len(set(alpaca.posts)), point  # no order was even tried twice
        assert_each_intent_sent_once(alpaca)
        orders = tradesim.open_paper("acct").broker_orders
        tonight = orders[orders["decided"] == str(session.date())]
        assert len(tonight) == len(alpaca.posts) - posted > 0 and set(tonight["state"]) == {"accepted"}, point
        assert_ledger_is_the_brokers(alpaca)


def test_drift_is_refused_until_resolved_either_way(tmp_path, alpaca):
    make(tmp_path, alpaca)
    for session in DATES[90:93]:
        assert night(alpaca, session).exit_code == 0
    alpaca.positions["AAA"] += 5  # bought by hand in the same broker account
    drifted = night(alpaca, DATES[93])
    assert drifted.exit_code == 2 and "AAA +5" in drifted.output, drifted.output
    event = re.search(r"drift (drift/\S+):", drifted.output).group(1)
    status = cli("paper", "status", "acct", "--now", alpaca.evening(DATES[93], "20:00"))
    assert re.search(r"drift: .*AAA", status.output) and f"data event {event} (open)" in status.output
    assert night(alpaca, DATES[93], trade=False, hour="20:00").exit_code == 2  # still refused
    wrong = cli("paper", "resolve", "acct", event, "--accept", "--reason", "x")
    assert wrong.exit_code != 0 and "--broker or --account" in wrong.output
    assert cli("paper", "resolve", "acct", event, "--broker", "--reason", "bought by hand").exit_code == 0
    assert night(alpaca, DATES[93], trade=False, hour="20:00").exit_code == 0
    assert_ledger_is_the_brokers(alpaca)
    assert cli("paper", "verify", "acct").exit_code == 0
    alpaca.positions["ZZZ"] = 3.0  # a ticker the account does not trade
    drifted = night(alpaca, DATES[94])
    assert drifted.exit_code == 2 and "ZZZ +3" in drifted.output
    event = re.search(r"drift (drift/\S+):", drifted.output).group(1)
    refused = cli("paper", "resolve", "acct", event, "--broker", "--reason", "x")
    assert refused.exit_code != 0 and "outside the account's tickers" in refused.output
    assert cli("paper", "resolve", "acct", event, "--account", "--reason", "someone else's").exit_code == 0
    assert night(alpaca, DATES[94], trade=False, hour="20:00").exit_code == 0
    assert night(alpaca, DATES[95]).exit_code == 0  # ZZZ stays the broker's, not the account's: no drift
    held, _ = ledger_state()
    assert "ZZZ" not in held and held["AAA"] == pytest.approx(alpaca.positions["AAA"])


def test_a_catch_up_sends_only_the_newest_nights_orders(tmp_path, alpaca):
    make(tmp_path, alpaca)
    assert night(alpaca, DATES[90]).exit_code == 0
    trade_day(alpaca, DATES[91])
    trade_day(alpaca, DATES[92])
    posted = len(alpaca.posts)
    caught_up = night(alpaca, DATES[93])
    assert caught_up.exit_code == 0, caught_up.output
    for skipped in DATES[91:93]:
        assert f"orders decided on {skipped.date()} are not sent" in caught_up.output
    assert alpaca.posts[posted:] and all(str(DATES[93].date()) in c for c in alpaca.posts[posted:])
    assert_ledger_is_the_brokers(alpaca)  # night 90's orders filled on 91 and were booked there
    alpaca.number = "PA3SOMEONEELSE"  # keys for another paper account
    other = night(alpaca, DATES[94])
    assert other.exit_code != 0 and "the keys in the environment are for broker account PA3SOMEONEELSE" in other.output


def test_broker_accounts_refuse_what_they_cannot_be(tmp_path, alpaca, monkeypatch, home):
    config = config_file(tmp_path)
    now = alpaca.evening(DATES[89])
    init = ("paper", "init", "acct", "--config", config, "--inception", INCEPTION.date(), "--now", now)
    cases = [
        ((*init, "--broker", "alpaca", "--capital", "5000"), "--capital"),
        ((*init, "--broker", "alpaca", "--dividends", "reinvest"), "--dividends reinvest"),
        ((*init, "--order-timing", "day"), "--order-timing: only for a broker account"),
    ]
    for args, said in cases:
        result = cli(*args)
        assert result.exit_code != 0 and said in result.output, result.output
    alpaca.unknown_assets = {"CCC"}
    unknown = cli(*init, "--broker", "alpaca")
    assert unknown.exit_code != 0 and "broker alpaca: CCC is not known there" in unknown.output, unknown.output
    alpaca.unknown_assets = set()
    monkeypatch.setenv("APCA_API_BASE_URL", "https://api.alpaca.markets")
    live = cli(*init, "--broker", "alpaca")
    assert live.exit_code != 0 and "live endpoint" in live.output
    monkeypatch.delenv("APCA_API_SECRET_KEY")
    keyless = cli(*init, "--broker", "alpaca")
    assert keyless.exit_code != 0 and "APCA_API_SECRET_KEY" in keyless.output
    next_close = write_config(tmp_path / "close.toml", tmp_path / "data", "signals", TICKERS, fill="next-close", params={"signals": str(tmp_path / "signals.csv")})
    monkeypatch.setenv("APCA_API_SECRET_KEY", SECRET)
    monkeypatch.setenv("APCA_API_BASE_URL", alpaca.url)
    closing = cli("paper", "init", "acct", "--config", next_close, "--inception", INCEPTION.date(), "--now", now, "--broker", "alpaca")
    assert closing.exit_code != 0 and "use fill next-open" in closing.output
    assert not (home / "paper" / "acct").exists()
    assert all(len(r.output.strip().splitlines()) == 1 for r in (live, keyless, closing))
